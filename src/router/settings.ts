/**
 * `settings.http` compiled with Unit's defaults (spec/router.md §2.11).
 * Timeouts are configured in seconds and kept here in milliseconds.
 */
import { SERVER_NAME, SERVER_NAME_SHORT } from '../runtime/version.ts';
import { compileMimeTypes, type MimeTable } from './mime.ts';
import { compileCompression, type Compression } from './compression.ts';

export interface HttpSettings {
  headerReadTimeout: number;
  bodyReadTimeout: number;
  sendTimeout: number;
  idleTimeout: number;
  maxBodySize: number;
  bodyBufferSize: number;
  bodyTempPath: string;
  largeHeaderBufferSize: number;
  largeHeaderBuffers: number;
  discardUnsafeFields: boolean;
  logRoute: boolean;
  serverVersion: boolean;
  /** `Server` field value: `Unit/1.35.0` or `Unit`. */
  serverHeader: string;
  /**
   * Accept chunked request bodies. Junction's default is true (Unit's is
   * false, answering 411): every target then receives a sized body.
   */
  chunkedTransform: boolean;
  mimeTypes: MimeTable;
  /** `compression` (§11); null when no compressor is configured. */
  compression: Compression | null;
}

type Obj = Record<string, unknown>;

const num = (o: Obj, k: string, d: number): number => (typeof o[k] === 'number' ? o[k] as number : d);
const bool = (o: Obj, k: string, d: boolean): boolean => (typeof o[k] === 'boolean' ? o[k] as boolean : d);

/** Compile `config.settings` (may be undefined). `tmpdir` is the default body_temp_path. */
export function compileSettings(settings: unknown, tmpdir: string): HttpSettings {
  const http = ((settings as Obj | undefined)?.http ?? {}) as Obj;
  const stat = (http.static ?? {}) as Obj;
  const serverVersion = bool(http, 'server_version', true);
  const sec = (k: string, d: number): number => Math.max(0, num(http, k, d)) * 1000;
  return {
    headerReadTimeout: sec('header_read_timeout', 30),
    bodyReadTimeout: sec('body_read_timeout', 30),
    sendTimeout: sec('send_timeout', 30),
    idleTimeout: sec('idle_timeout', 180),
    maxBodySize: num(http, 'max_body_size', 8388608),
    bodyBufferSize: num(http, 'body_buffer_size', 16384),
    bodyTempPath: typeof http.body_temp_path === 'string' ? http.body_temp_path : tmpdir,
    largeHeaderBufferSize: num(http, 'large_header_buffer_size', 8192),
    largeHeaderBuffers: num(http, 'large_header_buffers', 4),
    discardUnsafeFields: bool(http, 'discard_unsafe_fields', true),
    logRoute: bool(http, 'log_route', false),
    serverVersion,
    serverHeader: serverVersion ? SERVER_NAME : SERVER_NAME_SHORT,
    chunkedTransform: bool(http, 'chunked_transform', true),
    mimeTypes: compileMimeTypes(stat.mime_types as Record<string, string | string[]> | undefined),
    compression: compileCompression(http.compression),
  };
}

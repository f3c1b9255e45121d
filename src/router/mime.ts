/**
 * MIME types of static files (spec/router.md §8.2): Unit's built-in table,
 * extended or overridden by `settings.http.static.mime_types`.
 * The lookup key of a path is its last segment's extension from the last `.`
 * (dot included), or the whole segment when it has no dot; compared CI.
 */

const DEFAULT_TYPES: Record<string, string[]> = {
  'text/html': ['.html', '.htm'],
  'text/css': ['.css'],
  'text/plain': ['.txt'],
  'text/markdown': ['.md'],
  'text/x-rst': ['.rst'],
  'image/svg+xml': ['.svg'],
  'image/webp': ['.webp'],
  'image/png': ['.png'],
  'image/apng': ['.apng'],
  'image/jpeg': ['.jpeg', '.jpg'],
  'image/gif': ['.gif'],
  'image/x-icon': ['.ico'],
  'image/avif': ['.avif'],
  'image/avif-sequence': ['.avifs'],
  'font/woff': ['.woff'],
  'font/woff2': ['.woff2'],
  'font/otf': ['.otf'],
  'font/ttf': ['.ttf'],
  'application/javascript': ['.js', '.mjs'],
  'application/json': ['.json'],
  'application/xml': ['.xml'],
  'application/rss+xml': ['.rss'],
  'application/atom+xml': ['.atom'],
  'application/pdf': ['.pdf'],
  'application/zip': ['.zip'],
  'application/x-httpd-php': ['.php'],
  'audio/mpeg': ['.mp3'],
  'audio/ogg': ['.ogg'],
  'audio/flac': ['.flac'],
  'audio/aac': ['.aac'],
  'audio/wav': ['.wav'],
  'audio/midi': ['.midi', '.mid'],
  'video/mpeg': ['.mpeg', '.mpg'],
  'video/mp4': ['.mp4'],
  'video/webm': ['.webm'],
  'video/x-msvideo': ['.avi'],
  'application/octet-stream': ['.exe', '.bin', '.dll', '.iso', '.img', '.msi', '.deb', '.rpm'],
};

/** Extension (or file name) → type, keys lowercased. */
export type MimeTable = Map<string, string>;

/**
 * Build the table: the built-in entries, then `custom` (`{type: ext | [ext…]}`),
 * whose entries replace built-in ones with the same key.
 */
export function compileMimeTypes(custom?: Record<string, string | string[]>): MimeTable {
  const t: MimeTable = new Map();
  for (const type of Object.keys(DEFAULT_TYPES)) {
    for (const ext of DEFAULT_TYPES[type]) t.set(ext, type);
  }
  if (custom) {
    for (const type of Object.keys(custom)) {
      const v = custom[type];
      for (const ext of Array.isArray(v) ? v : [v]) t.set(ext.toLowerCase(), type);
    }
  }
  return t;
}

/** The lookup key of `path` (byte string), lowercased. */
export function mimeKey(path: string): string {
  const slash = path.lastIndexOf('/');
  const dot = path.lastIndexOf('.');
  return (dot > slash ? path.slice(dot) : path.slice(slash + 1)).toLowerCase();
}

/** Type of `path`, or undefined when unknown. */
export function mimeType(table: MimeTable, path: string): string | undefined {
  return table.get(mimeKey(path));
}

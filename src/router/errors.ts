/**
 * Status lines and the router's own error responses, as Unit sends them.
 *
 * Unit's status line is always `HTTP/1.1 NNN Reason` (even to HTTP/1.0 clients),
 * with its own reason table; codes without a reason keep the space before the
 * CRLF. Router-generated errors (and `return` of 400–599) carry a fixed
 * 54-byte HTML page. Source: spec/router.md §2.8, §2.9.
 */

const REASONS = new Map<number, string>([
  [100, 'Continue'], [101, 'Switching Protocols'],
  [200, 'OK'], [201, 'Created'], [202, 'Accepted'], [203, 'Non-Authoritative Information'],
  [204, 'No Content'], [205, 'Reset Content'], [206, 'Partial Content'],
  [300, 'Multiple Choices'], [301, 'Moved Permanently'], [302, 'Found'], [303, 'See Other'],
  [304, 'Not Modified'],
  // Unit's table shifts these two by offset (305/306 print them); we give them their own codes.
  [307, 'Temporary Redirect'], [308, 'Permanent Redirect'],
  [400, 'Bad Request'], [401, 'Unauthorized'], [402, 'Payment Required'], [403, 'Forbidden'],
  [404, 'Not Found'], [405, 'Method Not Allowed'], [406, 'Not Acceptable'],
  [407, 'Proxy Authentication Required'], [408, 'Request Timeout'], [409, 'Conflict'],
  [410, 'Gone'], [411, 'Length Required'], [412, 'Precondition Failed'],
  [413, 'Payload Too Large'], [414, 'URI Too Long'], [415, 'Unsupported Media Type'],
  [416, 'Range Not Satisfiable'], [417, 'Expectation Failed'], [418, "I'm a teapot"],
  [421, 'Misdirected Request'], [422, 'Unprocessable Entity'], [423, 'Locked'],
  [424, 'Failed Dependency'], [426, 'Upgrade Required'], [431, 'Request Header Fields Too Large'],
  [500, 'Internal Server Error'], [501, 'Not Implemented'], [502, 'Bad Gateway'],
  [503, 'Service Unavailable'], [504, 'Gateway Timeout'], [505, 'HTTP Version Not Supported'],
]);

/** Unit's internal code for plain HTTP on a TLS listener (sent as 400, logged as 497). */
export const STATUS_PLAIN_HTTP_ON_TLS = 497;

const LINES: string[] = [];
for (let code = 0; code < 1000; code++) {
  const reason = code === STATUS_PLAIN_HTTP_ON_TLS
    ? null : REASONS.get(code) ?? '';
  LINES.push(reason === null
    ? 'HTTP/1.1 400 The plain HTTP request was sent to HTTPS port\r\n'
    : `HTTP/1.1 ${String(code).padStart(3, '0')} ${reason}\r\n`);
}

/** The reason phrase Unit prints for `code` ('' when it has none). */
export function reasonPhrase(code: number): string {
  return REASONS.get(code) ?? '';
}

/**
 * The status line for `code` (0–999), CRLF included. 497 becomes
 * `HTTP/1.1 400 The plain HTTP request was sent to HTTPS port`.
 */
export function statusLine(code: number): string {
  return LINES[code] ?? `HTTP/1.1 ${code} \r\n`;
}

/** True for statuses answered with the error page (400–599, and 497). */
export function isErrorStatus(code: number): boolean {
  return code >= 400 && code <= 599;
}

/**
 * Body of Unit's error page for `code`: always 54 bytes,
 * `<!DOCTYPE html><title>Error NNN</title><p>Error NNN.\r\n`.
 */
export function errorPageBody(code: number): string {
  const c = String(code).padStart(3, '0');
  return `<!DOCTYPE html><title>Error ${c}</title><p>Error ${c}.\r\n`;
}

/** Content-Type of the error page. */
export const ERROR_PAGE_TYPE = 'text/html';

/**
 * A complete error response written straight on the socket, for failures seen
 * before a request object exists (malformed header, limits): the error page
 * with `Connection: close`.
 * @param server value of the `Server` field (`Unit/1.35.0` or `Unit`)
 * @param date   value of the `Date` field (RFC 1123)
 */
export function rawErrorResponse(code: number, server: string, date: string, withBody = true): string {
  const body = errorPageBody(code);
  return statusLine(code) +
    `Content-Type: ${ERROR_PAGE_TYPE}\r\nServer: ${server}\r\nDate: ${date}\r\n` +
    `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n` + (withBody ? body : '');
}

/**
 * The texts a control API client sees when its JSON body or its configuration
 * is refused (spec/control-api.md §5.2, §6). Clients and tests match on these,
 * so the first sentence of every JSON `detail` and every validation sentence
 * keeps Unit's exact wording; everything the validator and the parser report
 * comes from this one file.
 */

/** `detail` texts of a 400 `Invalid JSON.` answer (control-api.md §5.2). */
export const JSON_MESSAGES = {
  empty: 'An empty JSON payload isn\'t allowed.  The body must hold one JSON value: '
    + 'null, true, false, a number, a string, an array or an object.',
  trailing: 'Unexpected character after the end of a valid JSON value.  '
    + 'A body holds exactly one JSON value; remove what follows it.',
  value: 'A valid JSON value is expected here.  Write null, true, false, a number, '
    + 'a "string", an [array] or an {object}.',
  duplicate: 'Duplicate object member.  Each member name may appear only once in an object.',
  quote: 'A double quote (") is expected here.  An object member starts with its name '
    + 'written as a string in double quotes.',
  colon: 'A colon (:) is expected here.  A member name is followed by a colon and the value.',
  objectNext: 'Either a closing brace (}) or a comma (,) is expected here.  '
    + 'Object members are separated by commas and the object ends with a brace.',
  arrayNext: 'Either a closing bracket (]) or a comma (,) is expected here.  '
    + 'Array elements are separated by commas and the array ends with a bracket.',
  endObject: 'Unexpected end of JSON payload.  An object is missing its closing brace (}).',
  endArray: 'Unexpected end of JSON payload.  An array is missing its closing bracket (]).',
  endString: 'Unexpected end of JSON payload.  A string is missing its closing double quote (").',
  control: 'Unexpected character.  Control characters inside a JSON string must be written '
    + 'as escape sequences.',
  backslash: 'Unexpected backslash.  Write a literal backslash in a JSON string as two '
    + 'backslashes (\\\\).',
  escape: 'Invalid escape sequence.  A \\u escape needs exactly four hexadecimal digits (\\uXXXX).',
  surrogatePair: 'Invalid JSON encoding sequence.  These two \\u escapes do not form a valid '
    + 'UTF-16 surrogate pair.',
  surrogate: 'Invalid JSON encoding sequence.  This \\u escape is a lone UTF-16 surrogate, '
    + 'which is not a character.',
  leadingZero: 'The number is invalid.  Leading zeros are not allowed in JSON numbers.',
  fraction: 'The number is invalid.  A fraction needs at least one digit after the point.',
  exponent: 'The number is invalid.  An exponent needs at least one digit.',
  numberLong: 'The number is too long.  Number literals longer than 14 characters are '
    + 'not supported.',
  numberRange: 'The number is out of representable range.  Its magnitude must stay within '
    + 'a signed 64-bit integer.',
  stringLong: 'The string is too long.  Strings longer than 2147483647 bytes are not supported.',
  nesting: 'The JSON value is nested too deeply.  At most 1000 levels of arrays and '
    + 'objects are supported.',
} as const;

/** Type words used by type mismatch messages, in Unit's order (control-api.md §6.0). */
export const TYPE_WORDS = [
  'a null', 'a boolean', 'an integer number', 'a fractional number',
  'a string', 'an array', 'an object',
] as const;

const q = (s: string): string => `"${s}"`;

/** Validation `detail` texts of a 400 `Invalid configuration.` answer (control-api.md §6). */
export const M = {
  // §6.0 generic
  unknown: (name: string) => `Unknown parameter ${q(name)}.`,
  required: (name: string) => `Required parameter ${q(name)} is missing.`,
  type: (name: string, expected: string, actual: string) =>
    `The ${q(name)} value must be ${expected}, but not ${actual}.`,
  rootType: (expected: string, actual: string) =>
    `The configuration must be ${expected}, but not ${actual}.`,
  unsupported: (name: string) => `Unit is built without the ${q(name)} option support.`,

  // §6.2 listeners and pass
  listenerAddress: (name: string) => `The listener address ${q(name)} is invalid.`,
  passInvalid: (pass: string) => `Request "pass" value ${q(pass)} is invalid.`,
  passLocation: (pass: string) => `Request "pass" points to invalid location ${q(pass)}.`,
  listenerApp: (name: string) =>
    `Listening socket is assigned for a non existing application ${q(name)}.`,
  backlogMin: 'The "backlog" number must be equal to or greater than -1.',
  backlogMax: 'The "backlog" number must not exceed 2147483647.',

  // §6.3 tls
  certificateEmpty: 'The "certificate" array must contain at least one element.',
  certificateStrings: 'The "certificate" array must contain only string values.',
  certificateMissing: (name: string) => `Certificate ${q(name)} is not found.`,
  cacheSize: 'The "cache_size" number must not be negative.',
  sessionTimeout: 'The "timeout" number must be greater than zero.',
  ticketStrings: 'The "key" array must contain only string values.',
  ticketBase64: (key: string) => `Invalid Base64 format for the ticket key ${q(key)}.`,
  ticketLength: (n: number, key: string) =>
    `Invalid length ${n} of the ticket key ${q(key)}.  Must be 48 or 80 bytes.`,

  // §6.4 forwarded, addresses
  forwarded: 'The "forwarded" object must have either "client_ip" or "protocol" option set.',
  addressString: 'The "match" pattern for "address" must be a string.',
  addressPort: 'The "address" port an invalid port.',
  addressShort: 'The "address" is too short.',
  addressFormat: 'The "address" format is invalid.',
  addressOverlap: 'The "address" range is overlapping.',
  addressCidr: 'The "address" has an invalid CIDR prefix.',

  // §6.5 routes, match, actions
  routesObjects: 'The "routes" array must contain only object values.',
  patternStrings: (member: string) => `The "match" pattern for ${q(member)} must be strings.`,
  patternString: (member: string) => `The "match" pattern for ${q(member)} must be a string.`,
  patternDoubleStar: 'The "match" pattern must not contain double "*" markers.',
  patternEncoded: (member: string) =>
    `The "match" pattern for ${q(member)} is encoded but is invalid.`,
  patternArgumentsObject: 'The "match" pattern for "arguments" must be an object.',
  patternSetObjects: (member: string) => `The "match" patterns for ${q(member)} must be objects.`,
  patternEmptyName: 'The "match" pattern objects must not contain empty member names.',
  scheme: 'The "scheme" can either be "http" or "https".',
  actionNone: 'The "action" object must have either "pass", "return", "share", or "proxy" option set.',
  actionMany: 'The "action" object must have just one of "pass", "return", "share", or "proxy" options set.',
  returnRange: 'The "return" value is out of allowed HTTP status code range 0-999.',
  shareEmpty: 'The "share" array must contain at least one element.',
  shareStrings: 'The "share" array must contain only string values.',
  proxyAddress: (addr: string) => `The "proxy" address is invalid ${q(addr)}`,
  headerNameEmpty: 'The response header name must not be empty.',
  headerContentLength: 'The "Content-Length" response header value is not supported',
  headerValueType: (name: string) =>
    `The ${q(name)} response header value must either be a string or a null`,
  // Junction only: Node refuses such names and values when the header is set.
  headerNameToken: (name: string) =>
    `The response header name ${q(name)} is not a valid HTTP field name.`,
  headerValueControl: (name: string) =>
    `The ${q(name)} response header value must not contain control characters.`,

  // §6.6 applications
  appType: 'Application must have the "type" property set.',
  appModule: (type: string) =>
    `The module to run ${q(type)} is not found among the available application modules.`,
  processesMin: 'The "processes" number must be equal to or greater than 1.',
  processesMax: 'The "processes" number must not exceed 2147483647.',
  spareNegative: 'The "spare" number must not be negative.',
  spareMax: 'The "spare" number must not exceed 2147483647.',
  maxMin: 'The "max" number must be equal to or greater than 1.',
  maxMax: 'The "max" number must not exceed 2147483647.',
  spareAboveMax: 'The "spare" number must be less than or equal to "max".',
  idleNegative: 'The "idle_timeout" number must not be negative.',
  idleMax: 'The "idle_timeout" number must not exceed 2147483.',
  envNameEmpty: 'The environment name must not be empty.',
  envNameNul: 'The environment name must not contain null character.',
  envNameEquals: 'The environment name must not contain \'=\' character.',
  envValueType: (name: string) => `The ${q(name)} environment value must be a string.`,
  envValueNul: (name: string) =>
    `The ${q(name)} environment value must not contain null character.`,
  arrayStrings: (name: string) => `The ${q(name)} array must contain only string values.`,
  arrayNul: (name: string) =>
    `The ${q(name)} array must not contain strings with null character.`,
  arrayObjects: (name: string) => `The ${q(name)} array must contain only object values.`,
  targetsExclusive: (name: string) =>
    `The ${q(name)} option is mutually exclusive with the "targets" object.`,
  targetsMax: 'The "targets" object must not contain more than 254 members.',
  targetNameEmpty: 'The target name must not be empty.',
  targetObject: (name: string) => `The ${q(name)} target must be an object.`,
  pythonPrefix: 'The "prefix" must be a string beginning with "/".',
  pythonProtocol: 'The "protocol" can either be "wsgi" or "asgi".',
  threadsMin: 'The "threads" number must be equal to or greater than 1.',
  threadsMax: 'The "threads" number must not exceed 2147483647.',
  stackMin: (min: number) =>
    `The "thread_stack_size" number must be equal to or greater than ${min}.`,
  stackPage: (page: number) =>
    `The "thread_stack_size" number must be a multiple of the system page size (${page}).`,
  phpOptionEmpty: 'The PHP option name must not be empty.',
  phpOptionType: (name: string) => `The ${q(name)} PHP option must be a string.`,
  cgroupLong: (path: string) => `The cgroup path ${q(path)} is too long.`,
  cgroupInvalid: (path: string) => `The cgroup path ${q(path)} is invalid.`,

  // §6.7 upstreams
  upstreamServers: (name: string) => `The ${q(name)} upstream must contain "servers" object value.`,
  serverAddress: (name: string) => `The ${q(name)} is not valid server address.`,
  weightNegative: 'The "weight" number must be positive.',
  weightMax: 'The "weight" number must not exceed 1,000,000',

  // §6.8 access log
  logPathEmpty: 'The "path" string must not be empty.',
  logFormatName: 'In the access log format, the name must not be empty.',
  logFormatValue: 'In the access log format, the value must be a string.',

  // §6.9 settings
  listenThreadsMin: 'The "listen_threads" number must be equal to or greater than 1.',
  listenThreadsMax: 'The "listen_threads" number must not exceed 2147483647.',
  mimeStrings: (type: string) => `The ${q(type)} MIME type array must contain only strings.`,
  mimeEmpty: (type: string) => `An empty file extension for the ${q(type)} MIME type.`,
  mimeDuplicate: (ext: string, a: string, b: string) =>
    `The ${q(ext)} file extension has been declared for ${q(a)} and ${q(b)} MIME types at the same time.`,
  compressorsObjects: 'The "compressors" array must contain only object values.',
  compressor: (name: string) => `${q(name)} is not a supported compressor.`,
  jsModuleMissing: (name: string) => `JS module ${q(name)} is not found.`,

  // templates (router.md §6.1)
  templateUnknown: (variable: string, option: string) =>
    `Unknown variable ${q(variable)} in the ${q(option)} value.`,
  templateInvalid: (position: number, option: string) =>
    `Invalid variable at position ${position} in the ${q(option)} value.`,
  templateUnterminated: (option: string) =>
    `Unexpected end of template literal in the ${q(option)} value.`,

  // regular expressions (§6.5)
  regex: (msg: string, offset?: number) =>
    offset === undefined ? `Invalid regular expression: ${msg}`
      : `Invalid regular expression: ${msg} at offset ${offset}`,
} as const;

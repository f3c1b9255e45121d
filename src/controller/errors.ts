/**
 * The control API's error titles, word for word as Unit sends them
 * (spec/control-api.md §2.4). Clients match on these strings.
 */
export interface ControlError { status: number; error: string }

export const ERR = {
  noValue: { status: 404, error: "Value doesn't exist." },
  invalidPath: { status: 404, error: 'Invalid path.' },
  methodNotAllowed: { status: 405, error: "Method isn't allowed." },
  invalidMethod: { status: 405, error: 'Invalid method.' },
  applyFailed: { status: 500, error: 'Failed to apply new configuration.' },
  internal: { status: 500, error: 'Memory allocation failed.' },
  statusFailed: { status: 500, error: 'Failed to get status.' },
  restartFailed: { status: 500, error: 'Failed to restart app.' },
  // /js_modules (control-api.md §10)
  jsModuleName: { status: 400, error: 'Invalid JS module name.' },
  jsModuleExists: { status: 400, error: 'JS module already exists.' },
  jsModuleInvalid: { status: 400, error: 'Invalid JS module.' },
  jsModuleUsed: { status: 400, error: 'JS module is used in the configuration.' },
  jsModuleMissing: { status: 404, error: "JS module doesn't exist." },
  jsModuleStore: { status: 500, error: 'Failed to store script.' },
  // /certificates (control-api.md §9)
  certificateName: { status: 400, error: 'Invalid certificate name.' },
  certificateExists: { status: 400, error: 'Certificate already exists.' },
  certificateInvalid: { status: 400, error: 'Invalid certificate.' },
  certificateUsed: { status: 400, error: 'Certificate is used in the configuration.' },
  certificateMissing: { status: 404, error: "Certificate doesn't exist." },
  certificateStore: { status: 500, error: 'Failed to store certificate.' },
} as const satisfies Record<string, ControlError>;

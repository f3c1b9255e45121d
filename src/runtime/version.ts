/**
 * Version strings. Junction reports itself to clients and apps exactly as Unit
 * 1.35.0 does (`Server: Unit/1.35.0`, `SERVER_SOFTWARE`), because clients and
 * monitoring written for Unit look for those strings.
 */
export const JUNCTION_VERSION = '0.1.0';
/** The Unit version whose behaviour Junction reproduces. */
export const UNIT_VERSION = '1.35.0';
/** `Server` field value with and without the version (settings.http.server_version). */
export const SERVER_NAME = `Unit/${UNIT_VERSION}`;
export const SERVER_NAME_SHORT = 'Unit';
/** Content of `<statedir>/version` (Unit writes 13500 for 1.35.0). */
export const STATE_VERSION = 13500;

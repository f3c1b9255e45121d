/**
 * Application `type` parsing and module selection (spec/applications.md §2.2).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compareVersionsDescending, findAppModule, parseAppType, versionMatches } from '../../src/config/app-type.ts';

const modules = [
  { type: 'python', version: '3.9.18' },
  { type: 'python', version: '3.11.2' },
  { type: 'python', version: '3.12.1' },
  { type: 'php', version: '8.2.7' },
];

describe('parseAppType', () => {
  it('splits language and version at a space or the first digit', () => {
    assert.deepEqual(parseAppType('python'), { language: 'python', version: '' });
    assert.deepEqual(parseAppType('python 3.12'), { language: 'python', version: '3.12' });
    assert.deepEqual(parseAppType('python3.12'), { language: 'python', version: '3.12' });
    assert.deepEqual(parseAppType('php 8'), { language: 'php', version: '8' });
    assert.deepEqual(parseAppType('go'), { language: 'external', version: '' });
    assert.deepEqual(parseAppType('wasm-wasi-component'), { language: 'wasm-wasi-component', version: '' });
    assert.equal(parseAppType('node'), null);
    assert.equal(parseAppType(''), null);
  });
});

describe('versionMatches', () => {
  it('matches at a component boundary only', () => {
    assert.equal(versionMatches('3.11.2', ''), true);
    assert.equal(versionMatches('3.11.2', '3'), true);
    assert.equal(versionMatches('3.11.2', '3.11'), true);
    assert.equal(versionMatches('3.11.2', '3.11.2'), true);
    assert.equal(versionMatches('3.11.2', '3.'), true);
    assert.equal(versionMatches('3.11.2', '3.1'), false);
    assert.equal(versionMatches('3.11.2', '4'), false);
  });
});

describe('findAppModule', () => {
  it('takes the highest matching version', () => {
    assert.deepEqual(findAppModule('python', modules), { type: 'python', version: '3.12.1' });
    assert.deepEqual(findAppModule('python 3.11', modules), { type: 'python', version: '3.11.2' });
    assert.deepEqual(findAppModule('python3.9', modules), { type: 'python', version: '3.9.18' });
    assert.deepEqual(findAppModule('php', modules), { type: 'php', version: '8.2.7' });
    assert.equal(findAppModule('python 3.1', modules), null);
    assert.equal(findAppModule('perl', modules), null);
  });
  it('external is always there, without a version', () => {
    assert.deepEqual(findAppModule('external', []), { type: 'external', version: '' });
    assert.deepEqual(findAppModule('go', []), { type: 'external', version: '' });
    assert.equal(findAppModule('external 1', []), null);
  });
  it('sorts versions numerically', () => {
    assert.deepEqual(['3.9.1', '3.12.0', '3.11.2', '3.12'].sort(compareVersionsDescending), ['3.12.0', '3.12', '3.11.2', '3.9.1']);
  });
});

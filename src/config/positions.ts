/**
 * A small TOML source scanner that maps key paths such as
 * `pools.web.backends[1].address` to 1-based line:col positions, because
 * smol-toml reports none. It runs on text smol-toml already accepted, and is
 * best effort: anything it cannot follow is simply absent (line 0).
 */

export interface Pos { readonly line: number; readonly col: number }

export const NO_POS: Pos = Object.freeze({ line: 0, col: 0 });

/** Contract: appends a table key to a path, quoting it when it is not a bare key. */
export function joinKey(base: string, key: string): string {
  const k = /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
  return base === '' ? k : `${base}.${k}`;
}

/** Contract: appends an array index to a path ("a" -> "a[3]"). */
export function joinIndex(base: string, index: number): string {
  return `${base}[${index}]`;
}

export interface Positions {
  /** Position of the value at `path` (or of its table header); NO_POS if unknown. */
  value(path: string): Pos;
  /** Position of the key naming `path`; falls back to value(path). */
  key(path: string): Pos;
  /** value(path), else the nearest known enclosing path's position. */
  near(path: string): Pos;
}

/** Contract: strips the last `.key` or `[i]` segment of a path ("" stays ""). */
export function parentPath(path: string): string {
  if (path.endsWith(']')) return path.slice(0, path.lastIndexOf('['));
  let inQuote = false;
  let cut = -1;
  for (let i = 0; i < path.length; i++) {
    const c = path[i];
    if (c === '\\' && inQuote) { i++; continue; }
    if (c === '"') inQuote = !inQuote;
    else if (!inQuote && (c === '.' || c === '[')) cut = i;
  }
  return cut < 0 ? '' : path.slice(0, cut);
}

class Scanner {
  i = 0;
  line = 1;
  lineStart = 0;
  readonly values = new Map<string, Pos>();
  readonly keys = new Map<string, Pos>();
  readonly aotCounts = new Map<string, number>();
  constructor(readonly s: string) {}

  pos(): Pos { return { line: this.line, col: this.i - this.lineStart + 1 }; }
  peek(o = 0): string { return this.s[this.i + o] ?? ''; }
  advance(): void {
    if (this.s[this.i] === '\n') { this.line++; this.lineStart = this.i + 1; }
    this.i++;
  }
  eof(): boolean { return this.i >= this.s.length; }

  /** Skips spaces and tabs (and newlines/comments too when `lines`). */
  skipWs(lines: boolean): void {
    while (!this.eof()) {
      const c = this.peek();
      if (c === ' ' || c === '\t' || c === '\r') this.advance();
      else if (c === '#') { while (!this.eof() && this.peek() !== '\n') this.advance(); }
      else if (lines && c === '\n') this.advance();
      else break;
    }
  }

  setValue(path: string, p: Pos): void { if (!this.values.has(path)) this.values.set(path, p); }
  setKey(path: string, p: Pos): void { if (!this.keys.has(path)) this.keys.set(path, p); }

  /** Reads one simple key (bare, "basic" or 'literal'). */
  readSimpleKey(): string {
    const c = this.peek();
    if (c === '"' || c === "'") return this.readString();
    let k = '';
    while (!this.eof() && /[A-Za-z0-9_-]/.test(this.peek())) { k += this.peek(); this.advance(); }
    if (k === '') throw new Error('key expected');
    return k;
  }

  /** Reads a dotted key into its parts, recording the start position of each. */
  readKey(): { parts: string[]; starts: Pos[] } {
    const parts: string[] = [];
    const starts: Pos[] = [];
    for (;;) {
      this.skipWs(false);
      starts.push(this.pos());
      parts.push(this.readSimpleKey());
      this.skipWs(false);
      if (this.peek() !== '.') return { parts, starts };
      this.advance();
    }
  }

  /** Reads a single-line or multi-line string and returns its content (approximately for escapes). */
  readString(): string {
    const q = this.peek();
    const multi = this.peek(1) === q && this.peek(2) === q;
    const n = multi ? 3 : 1;
    for (let k = 0; k < n; k++) this.advance();
    let out = '';
    while (!this.eof()) {
      const c = this.peek();
      if (q === '"' && c === '\\') {
        this.advance();
        const e = this.peek();
        out += e === 'n' ? '\n' : e === 't' ? '\t' : e;
        this.advance();
        continue;
      }
      if (c === q && (!multi || (this.peek(1) === q && this.peek(2) === q))) {
        for (let k = 0; k < n; k++) this.advance();
        // A multi-line string may end with up to two extra quotes.
        while (multi && this.peek() === q) { out += q; this.advance(); }
        return out;
      }
      out += c;
      this.advance();
    }
    return out;
  }

  /** Resolves header/dotted key parts under `base`, inserting the latest [i] of arrays of tables. */
  resolve(base: string, parts: string[]): string {
    let path = base;
    for (const part of parts) {
      path = joinKey(path, part);
      const count = this.aotCounts.get(path);
      if (count !== undefined) path = joinIndex(path, count - 1);
    }
    return path;
  }

  /** Reads a value at the cursor and records positions for it and anything inside. */
  readValue(path: string): void {
    this.setValue(path, this.pos());
    const c = this.peek();
    if (c === '"' || c === "'") { this.readString(); return; }
    if (c === '[') {
      this.advance();
      let index = 0;
      for (;;) {
        this.skipWs(true);
        if (this.peek() === ']' || this.eof()) { this.advance(); return; }
        this.readValue(joinIndex(path, index++));
        this.skipWs(true);
        if (this.peek() === ',') this.advance();
      }
    }
    if (c === '{') {
      this.advance();
      for (;;) {
        this.skipWs(true);
        if (this.peek() === '}' || this.eof()) { this.advance(); return; }
        this.readKeyValue(path);
        this.skipWs(true);
        if (this.peek() === ',') this.advance();
      }
    }
    while (!this.eof() && !/[,\]}#\n]/.test(this.peek())) this.advance();
  }

  /** Reads `key = value` under table path `base`. */
  readKeyValue(base: string): void {
    const { parts, starts } = this.readKey();
    let path = base;
    parts.forEach((part, k) => {
      path = joinKey(path, part);
      const p = starts[k];
      if (p !== undefined) this.setKey(path, p);
      if (k < parts.length - 1 && p !== undefined) this.setValue(path, p);
    });
    this.skipWs(false);
    if (this.peek() !== '=') throw new Error('= expected');
    this.advance();
    this.skipWs(false);
    this.readValue(path);
  }

  /** Reads a `[table]` or `[[array.of.tables]]` header; returns the new table path. */
  readHeader(): string {
    const start = this.pos();
    const aot = this.peek(1) === '[';
    this.advance();
    if (aot) this.advance();
    const { parts, starts } = this.readKey();
    const last = parts.pop();
    if (last === undefined) throw new Error('empty header');
    let path = this.resolve('', parts);
    path = joinKey(path, last);
    const keyStart = starts[starts.length - 1] ?? start;
    if (aot) {
      const count = (this.aotCounts.get(path) ?? 0) + 1;
      this.aotCounts.set(path, count);
      this.setValue(path, start);
      this.setKey(path, keyStart);
      path = joinIndex(path, count - 1);
    }
    this.setValue(path, start);
    this.setKey(path, keyStart);
    this.skipWs(false);
    this.advance();
    if (aot) this.advance();
    return path;
  }

  run(): void {
    let table = '';
    for (;;) {
      this.skipWs(true);
      if (this.eof()) return;
      if (this.peek() === '[') table = this.readHeader();
      else this.readKeyValue(table);
      // Skip to the end of the line (trailing comments).
      this.skipWs(false);
      while (!this.eof() && this.peek() !== '\n') this.advance();
    }
  }
}

/**
 * Contract: scans TOML source text and returns position lookups for key
 * paths in the syntax validate.ts uses (`a.b[2].c`, quoted non-bare keys).
 * Never throws: on anything it cannot follow it returns what it has so far.
 */
export function scanPositions(text: string): Positions {
  const sc = new Scanner(text);
  try {
    sc.run();
  } catch {
    // best effort: keep the positions found so far
  }
  const value = (path: string): Pos => sc.values.get(path) ?? NO_POS;
  const key = (path: string): Pos => sc.keys.get(path) ?? value(path);
  const near = (path: string): Pos => {
    let p = path;
    for (;;) {
      const found = sc.values.get(p);
      if (found !== undefined) return found;
      if (p === '') return NO_POS;
      p = parentPath(p);
    }
  };
  return { value, key, near };
}

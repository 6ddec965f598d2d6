// A small POSIX tar (ustar + pax) writer with Node built-ins only, for
// `instances.sync`: regular files, directories and symbolic links, 512-byte
// headers with their checksum, and pax extended headers for what ustar cannot
// hold (names or link targets over 100 bytes, sizes of 8 GiB or more).

import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';

const BLOCK = 512;
const enc = new TextEncoder();

/** One entry of a tar archive. */
export interface TarEntry {
  /** Relative POSIX path (`dir/a.txt`); directories may end with `/`. */
  path: string;
  type: 'file' | 'directory' | 'symlink';
  /** Permission bits (default 0o644 for files and links, 0o755 for directories). */
  mode?: number;
  /** Modification time in seconds since the epoch (default now). */
  mtime?: number;
  /** Content of a file. */
  data?: Uint8Array;
  /** Target of a symbolic link. */
  linkTarget?: string;
}

/** Largest value an 11-digit octal field holds. */
const MAX_OCTAL_11 = 0o77777777777;

/** Writes `value` as zero-padded octal of width-1 digits plus a NUL. */
function octal(buf: Uint8Array, offset: number, width: number, value: number): void {
  const s = Math.floor(value).toString(8).padStart(width - 1, '0');
  buf.set(enc.encode(s), offset);
  buf[offset + width - 1] = 0;
}

/** Writes the bytes of s into buf at offset, at most width bytes. */
function text(buf: Uint8Array, offset: number, width: number, s: string | Uint8Array): void {
  const b = typeof s === 'string' ? enc.encode(s) : s;
  buf.set(b.subarray(0, width), offset);
}

/** One pax record: "<len> <key>=<value>\n", len counting itself. */
function paxRecord(key: string, value: string): Uint8Array {
  const body = enc.encode(` ${key}=${value}\n`);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  const out = new Uint8Array(len);
  out.set(enc.encode(String(len)), 0);
  out.set(body, String(len).length);
  return out;
}

/** A 512-byte ustar header; its checksum is filled in. */
function header(h: {
  name: Uint8Array | string;
  mode: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname?: string;
}): Uint8Array {
  const b = new Uint8Array(BLOCK);
  text(b, 0, 100, h.name);
  octal(b, 100, 8, h.mode & 0o7777);
  octal(b, 108, 8, 0); // uid
  octal(b, 116, 8, 0); // gid
  octal(b, 124, 12, h.size);
  octal(b, 136, 12, Math.max(0, Math.min(h.mtime, MAX_OCTAL_11)));
  b.fill(0x20, 148, 156); // checksum field counts as spaces while summing
  b[156] = h.typeflag.charCodeAt(0);
  if (h.linkname) text(b, 157, 100, h.linkname);
  text(b, 257, 6, 'ustar\0');
  text(b, 263, 2, '00');
  octal(b, 329, 8, 0); // devmajor
  octal(b, 337, 8, 0); // devminor
  let sum = 0;
  for (const v of b) sum += v;
  // Six octal digits, NUL, space (the historical layout every reader accepts).
  text(b, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return b;
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** The bytes of a tar archive holding `entries`, in order, with its end-of-archive blocks. */
export function createTar(entries: Iterable<TarEntry>): Uint8Array {
  const parts: Uint8Array[] = [];
  const now = Math.floor(Date.now() / 1000);
  for (const e of entries) {
    let name = e.path.replace(/^\/+/, '').replace(/^(\.\/)+/, '');
    if (e.type === 'directory' && !name.endsWith('/')) name += '/';
    if (name === '' || name === '/') throw new TypeError('tar entry without a name');
    const data = e.type === 'file' ? (e.data ?? new Uint8Array(0)) : new Uint8Array(0);
    const link = e.type === 'symlink' ? (e.linkTarget ?? '') : '';
    if (e.type === 'symlink' && link === '') throw new TypeError(`symlink ${name} without a target`);
    const mode = e.mode ?? (e.type === 'directory' ? 0o755 : 0o644);
    const mtime = e.mtime ?? now;

    const nameBytes = enc.encode(name);
    const pax: Uint8Array[] = [];
    if (nameBytes.length > 100) pax.push(paxRecord('path', name));
    if (enc.encode(link).length > 100) pax.push(paxRecord('linkpath', link));
    if (data.length > MAX_OCTAL_11) pax.push(paxRecord('size', String(data.length)));
    if (pax.length > 0) {
      const size = pax.reduce((n, r) => n + r.length, 0);
      // The pax header's own name: informative only, kept under 100 bytes.
      const base = name.replace(/\/$/, '').split('/').pop() ?? 'entry';
      const paxName = ('PaxHeaders/' + base).slice(0, 99);
      parts.push(header({ name: paxName, mode: 0o644, size, mtime, typeflag: 'x' }), ...pax, new Uint8Array(padding(size)));
    }
    // The ustar fields then hold what fits; readers take the pax values.
    parts.push(
      header({
        name: nameBytes.length > 100 ? truncateUtf8(name, 100) : nameBytes,
        mode,
        size: data.length > MAX_OCTAL_11 ? 0 : data.length,
        mtime,
        typeflag: e.type === 'file' ? '0' : e.type === 'directory' ? '5' : '2',
        linkname: enc.encode(link).length > 100 ? '' : link,
      }),
    );
    if (data.length > 0) parts.push(data, new Uint8Array(padding(data.length)));
  }
  parts.push(new Uint8Array(2 * BLOCK));
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The first bytes of s, at most max, not cutting a UTF-8 sequence. */
function truncateUtf8(s: string, max: number): Uint8Array {
  const b = enc.encode(s);
  let n = Math.min(max, b.length);
  while (n > 0 && n < b.length && (b[n]! & 0xc0) === 0x80) n--;
  return b.subarray(0, n);
}

/** Options of `packDirectory`. */
export interface PackOptions {
  /**
   * What to leave out, matched against every file, directory and link below
   * the directory (an excluded directory is left out with all it holds):
   *
   * - a pattern without `/` matches a name at any depth: `node_modules`,
   *   `.git`, `*.log`, `*.py[co]`;
   * - a pattern with `/` matches the path relative to the directory, from its
   *   start: `build/cache`, `docs/*.tmp`;
   * - a trailing `/` matches directories only: `dist/`.
   *
   * `*` matches any characters but `/`, `?` one character but `/`, `[abc]` one
   * of a set; `**` followed by a slash matches any number of directories.
   */
  exclude?: string[];
}

/** Counts of a packed directory. */
export interface PackStats {
  files: number;
  directories: number;
  symlinks: number;
  /** Bytes of file content. */
  bytes: number;
}

interface Matcher {
  re: RegExp;
  /** Matched against the relative path (else the name). */
  anchored: boolean;
  dirOnly: boolean;
}

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else {
          re += '.*';
        }
      } else {
        re += '[^/]*';
      }
    } else if (c === '?') {
      re += '[^/]';
    } else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) {
        re += '\\[';
      } else {
        let set = glob.slice(i + 1, end);
        const negate = set.startsWith('!') || set.startsWith('^');
        if (negate) set = set.slice(1);
        re += '[' + (negate ? '^' : '') + set.replace(/[\\\]]/g, '\\$&') + ']';
        i = end;
      }
    } else {
      re += c.replace(/[.+^${}()|\\/\]]/g, '\\$&');
    }
  }
  return new RegExp('^' + re + '$');
}

function matchers(exclude: string[]): Matcher[] {
  return exclude
    .map((p) => p.trim())
    .filter((p) => p !== '' && p !== '/')
    .map((p) => {
      const dirOnly = p.endsWith('/');
      const body = p.replace(/^\.\//, '').replace(/\/+$/, '');
      const anchored = body.includes('/');
      return { re: globToRegExp(body.replace(/^\/+/, '')), anchored, dirOnly };
    });
}

function excluded(ms: Matcher[], rel: string, name: string, isDir: boolean): boolean {
  return ms.some((m) => (!m.dirOnly || isDir) && m.re.test(m.anchored ? rel : name));
}

/**
 * A tar archive of everything under `dir` (not `dir` itself): names relative to
 * it, directories, regular files and symbolic links (kept as links, never
 * followed); sockets, FIFOs and devices are left out, and so is whatever
 * `exclude` names. Entries come in name order, each directory before its content.
 */
export async function packDirectory(dir: string, options: PackOptions = {}): Promise<{ tar: Uint8Array; stats: PackStats }> {
  const top = await lstat(dir).catch((e: unknown) => {
    throw new TypeError(`cannot read directory ${dir}: ${(e as Error).message}`);
  });
  if (!top.isDirectory()) throw new TypeError(`${dir} is not a directory`);
  const ms = matchers(options.exclude ?? []);
  const entries: TarEntry[] = [];
  const stats: PackStats = { files: 0, directories: 0, symlinks: 0, bytes: 0 };
  const walk = async (abs: string, rel: string): Promise<void> => {
    const names = (await readdir(abs)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const name of names) {
      const full = join(abs, name);
      const path = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(full);
      if (excluded(ms, path, name, st.isDirectory())) continue;
      const mtime = Math.floor(st.mtimeMs / 1000);
      const mode = st.mode & 0o7777;
      if (st.isDirectory()) {
        entries.push({ path, type: 'directory', mode, mtime });
        stats.directories++;
        await walk(full, path);
      } else if (st.isFile()) {
        const data = new Uint8Array(await readFile(full));
        entries.push({ path, type: 'file', mode, mtime, data });
        stats.files++;
        stats.bytes += data.length;
      } else if (st.isSymbolicLink()) {
        entries.push({ path, type: 'symlink', mode: 0o777, mtime, linkTarget: await readlink(full) });
        stats.symlinks++;
      }
    }
  };
  await walk(dir, '');
  return { tar: createTar(entries), stats };
}

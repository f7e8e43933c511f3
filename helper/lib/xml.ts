/**
 * A small, careful XML reader/writer for editing answer files in place.
 *
 * Parses into a tree that keeps everything it does not understand verbatim
 * (comments, processing instructions, CDATA, whitespace), so an edit changes
 * only the elements it touches. Refuses DOCTYPE (no entity expansion, ever)
 * and anything malformed, with one line naming the cause. Knows nothing of
 * namespaces beyond matching elements by local name and finding the prefix
 * bound to a URI.
 *
 * Encodings: UTF-8 (with or without BOM) and UTF-16 LE/BE with BOM; a
 * document is written back in the encoding it came in.
 */

export interface XAttr {
  name: string;
  /** Decoded value. */
  value: string;
}

export interface XElement {
  kind: "element";
  name: string;
  attrs: XAttr[];
  children: XNode[];
  /** Written as <x/> when it has no children. */
  selfClosing: boolean;
  parent?: XElement;
}

/** Character data, kept as written (entities not decoded). */
export interface XText {
  kind: "text";
  raw: string;
}

/** Comment, processing instruction, CDATA or XML declaration, verbatim. */
export interface XRaw {
  kind: "raw";
  raw: string;
}

export type XNode = XElement | XText | XRaw;

export interface XDocument {
  /** Nodes before the root element (declaration, comments, whitespace). */
  prolog: XNode[];
  root: XElement;
  /** Nodes after the root element. */
  epilog: XNode[];
  encoding: "utf8" | "utf8bom" | "utf16le" | "utf16be";
}

export class XmlError extends Error {}

const NAME = /^[A-Za-z_:][-A-Za-z0-9_:.]*/;
const ENTITIES: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };

export function decodeEntities(s: string): string {
  return s.replace(/&([^;&\s]{1,10});/g, (whole, e: string) => {
    if (e in ENTITIES) return ENTITIES[e]!;
    const m = /^#(?:x([0-9A-Fa-f]{1,6})|([0-9]{1,7}))$/.exec(e);
    if (m) {
      const cp = m[1] !== undefined ? parseInt(m[1], 16) : Number(m[2]);
      if (cp === 0 || cp > 0x10ffff) throw new XmlError(`bad character reference ${whole}`);
      return String.fromCodePoint(cp);
    }
    throw new XmlError(`unknown entity ${whole}`);
  });
}

export function escapeText(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function escapeAttr(s: string): string {
  return escapeText(s).replace(/"/g, "&quot;").replace(/\r/g, "&#13;").replace(/\n/g, "&#10;").replace(/\t/g, "&#9;");
}

/** Bytes → text, remembering the encoding. */
export function decodeBytes(buf: Uint8Array): { text: string; encoding: XDocument["encoding"] } {
  if (buf[0] === 0xff && buf[1] === 0xfe) return { text: new TextDecoder("utf-16le", { fatal: true }).decode(buf.subarray(2)), encoding: "utf16le" };
  if (buf[0] === 0xfe && buf[1] === 0xff) {
    const swapped = Buffer.from(buf.subarray(2));
    swapped.swap16();
    return { text: new TextDecoder("utf-16le", { fatal: true }).decode(swapped), encoding: "utf16be" };
  }
  if (buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) return { text: decodeUtf8(buf.subarray(3)), encoding: "utf8bom" };
  return { text: decodeUtf8(buf), encoding: "utf8" };
}

function decodeUtf8(buf: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(buf);
  } catch {
    throw new XmlError("not UTF-8 and no UTF-16 byte-order mark");
  }
}

export function encodeText(text: string, encoding: XDocument["encoding"]): Uint8Array {
  switch (encoding) {
    case "utf8":
      return new Uint8Array(Buffer.from(text, "utf8"));
    case "utf8bom":
      return new Uint8Array(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text, "utf8")]));
    case "utf16le":
      return new Uint8Array(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, "utf16le")]));
    case "utf16be": {
      const b = Buffer.from(text, "utf16le");
      b.swap16();
      return new Uint8Array(Buffer.concat([Buffer.from([0xfe, 0xff]), b]));
    }
  }
}

/** Parse a whole document. */
export function parseXml(input: string | Uint8Array): XDocument {
  const { text, encoding } = typeof input === "string" ? { text: input, encoding: "utf8" as const } : decodeBytes(input);
  let i = 0;
  const prolog: XNode[] = [];
  const epilog: XNode[] = [];
  let root: XElement | undefined;
  const stack: XElement[] = [];
  const lineAt = (pos: number) => text.slice(0, pos).split("\n").length;
  const fail = (msg: string, pos = i): never => {
    throw new XmlError(`${msg} at line ${lineAt(pos)}`);
  };
  const add = (n: XNode) => {
    const top = stack[stack.length - 1];
    if (top) {
      top.children.push(n);
      if (n.kind === "element") n.parent = top;
    } else if (n.kind === "element") {
      if (root) fail("a second root element");
      root = n;
    } else if (n.kind === "text" && n.raw.trim() !== "") fail("text outside the root element");
    else (root ? epilog : prolog).push(n);
  };
  const until = (end: string, what: string): string => {
    const j = text.indexOf(end, i);
    if (j < 0) fail(`unterminated ${what}`);
    const s = text.slice(i, j + end.length);
    i = j + end.length;
    return s;
  };
  while (i < text.length) {
    if (text[i] !== "<") {
      const j = text.indexOf("<", i);
      const raw = text.slice(i, j < 0 ? text.length : j);
      if (raw.includes("]]>")) fail("']]>' in text");
      decodeEntities(raw); // validate
      add({ kind: "text", raw });
      i = j < 0 ? text.length : j;
      continue;
    }
    if (text.startsWith("<!--", i)) {
      add({ kind: "raw", raw: until("-->", "comment") });
      continue;
    }
    if (text.startsWith("<![CDATA[", i)) {
      if (stack.length === 0) fail("CDATA outside the root element");
      add({ kind: "raw", raw: until("]]>", "CDATA section") });
      continue;
    }
    if (text.startsWith("<!", i)) fail("DOCTYPE and other declarations are not accepted");
    if (text.startsWith("<?", i)) {
      add({ kind: "raw", raw: until("?>", "processing instruction") });
      continue;
    }
    if (text.startsWith("</", i)) {
      const start = i;
      i += 2;
      const m = NAME.exec(text.slice(i));
      if (!m) fail("bad closing tag");
      i += m![0].length;
      while (/\s/.test(text[i] ?? "")) i++;
      if (text[i] !== ">") fail("bad closing tag");
      i++;
      const top = stack.pop();
      if (!top || top.name !== m![0]) fail(`closing tag </${m![0]}> does not match <${top?.name ?? "nothing"}>`, start);
      continue;
    }
    // start tag
    i++;
    const m = NAME.exec(text.slice(i));
    if (!m) fail("bad tag name");
    const el: XElement = { kind: "element", name: m![0], attrs: [], children: [], selfClosing: false };
    i += m![0].length;
    for (;;) {
      const ws = /^\s*/.exec(text.slice(i))![0].length;
      i += ws;
      if (text.startsWith("/>", i)) {
        i += 2;
        el.selfClosing = true;
        add(el);
        break;
      }
      if (text[i] === ">") {
        i++;
        add(el);
        stack.push(el);
        break;
      }
      if (ws === 0) fail(`bad attribute in <${el.name}>`);
      const an = NAME.exec(text.slice(i));
      if (!an) fail(`bad attribute in <${el.name}>`);
      i += an![0].length;
      const eq = /^\s*=\s*/.exec(text.slice(i));
      if (!eq) fail(`attribute ${an![0]} without a value`);
      i += eq![0].length;
      const q = text[i];
      if (q !== '"' && q !== "'") fail(`attribute ${an![0]} value is not quoted`);
      const end = text.indexOf(q!, i + 1);
      if (end < 0) fail("unterminated attribute value");
      const rawVal = text.slice(i + 1, end);
      if (rawVal.includes("<")) fail(`'<' in attribute ${an![0]}`);
      if (el.attrs.some((a) => a.name === an![0])) fail(`attribute ${an![0]} given twice`);
      el.attrs.push({ name: an![0], value: decodeEntities(rawVal) });
      i = end + 1;
    }
  }
  if (stack.length > 0) fail(`<${stack[stack.length - 1]!.name}> is not closed`);
  if (!root) throw new XmlError("no root element");
  return { prolog, root, epilog, encoding };
}

function serializeNode(n: XNode): string {
  if (n.kind !== "element") return n.raw;
  const attrs = n.attrs.map((a) => ` ${a.name}="${escapeAttr(a.value)}"`).join("");
  if (n.children.length === 0 && n.selfClosing) return `<${n.name}${attrs} />`;
  return `<${n.name}${attrs}>${n.children.map(serializeNode).join("")}</${n.name}>`;
}

export function serializeXml(doc: XDocument): string {
  return [...doc.prolog, doc.root, ...doc.epilog].map(serializeNode).join("");
}

// ---------------------------------------------------------------------------
// tree helpers

export const localName = (name: string): string => name.slice(name.indexOf(":") + 1);

export function attr(el: XElement, name: string): string | undefined {
  return el.attrs.find((a) => a.name === name)?.value;
}

export function setAttr(el: XElement, name: string, value: string): void {
  const a = el.attrs.find((x) => x.name === name);
  if (a) a.value = value;
  else el.attrs.push({ name, value });
}

export function childElements(el: XElement, local?: string): XElement[] {
  return el.children.filter((c): c is XElement => c.kind === "element" && (local === undefined || localName(c.name) === local));
}

/** Decoded text content of an element (text and CDATA, descendants included). */
export function textOf(el: XElement): string {
  return el.children
    .map((c) => {
      if (c.kind === "text") return decodeEntities(c.raw);
      if (c.kind === "raw" && c.raw.startsWith("<![CDATA[")) return c.raw.slice(9, -3);
      if (c.kind === "element") return textOf(c);
      return "";
    })
    .join("");
}

/** Replace an element's content with one text node. */
export function setText(el: XElement, value: string): void {
  el.children = [{ kind: "text", raw: escapeText(value) }];
  el.selfClosing = false;
}

/** The prefix bound to `uri` in scope at `el` ("" for the default namespace), or undefined. */
export function prefixFor(el: XElement, uri: string): string | undefined {
  for (let e: XElement | undefined = el; e; e = e.parent) {
    for (const a of e.attrs) {
      if (a.value !== uri) continue;
      if (a.name === "xmlns") return "";
      if (a.name.startsWith("xmlns:")) return a.name.slice(6);
    }
  }
  return undefined;
}

/** The whitespace that precedes `el`'s closing tag, used as its own indentation. */
function indentOf(el: XElement): string {
  const parent = el.parent;
  if (!parent) return "\n";
  const idx = parent.children.indexOf(el);
  const before = parent.children[idx - 1];
  if (before?.kind === "text" && /^\s*$/.test(before.raw) && before.raw.includes("\n")) return before.raw.slice(before.raw.lastIndexOf("\n"));
  return `\n${"    ".repeat(depth(el))}`;
}

function depth(el: XElement): number {
  let d = 0;
  for (let e = el.parent; e; e = e.parent) d++;
  return d;
}

/**
 * Append a new child element (before the closing tag), indented like its
 * siblings (or one step deeper than the parent). Returns the new element.
 */
export function appendElement(parent: XElement, name: string, attrs: XAttr[] = [], text?: string): XElement {
  const child: XElement = { kind: "element", name, attrs: [...attrs], children: [], selfClosing: false, parent };
  if (text !== undefined) setText(child, text);
  const own = indentOf(parent);
  const firstEl = parent.children.findIndex((c) => c.kind === "element");
  const prev = firstEl > 0 ? parent.children[firstEl - 1] : undefined;
  const childIndent = prev?.kind === "text" && /^\s*$/.test(prev.raw) && prev.raw.includes("\n") ? prev.raw.slice(prev.raw.lastIndexOf("\n")) : `${own}    `;
  const last = parent.children[parent.children.length - 1];
  if (last?.kind === "text" && /^\s*$/.test(last.raw)) parent.children.pop();
  parent.children.push({ kind: "text", raw: childIndent }, child, { kind: "text", raw: own });
  parent.selfClosing = false;
  return child;
}

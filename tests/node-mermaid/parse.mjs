import { JSDOM } from "jsdom";
const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window; globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
import fs from "fs";
const text = fs.readFileSync(0, "utf8");
try { const r = await mermaid.parse(text); console.log(JSON.stringify({ok: true, type: r.diagramType})); }
catch (e) { console.log(JSON.stringify({ok: false, error: String(e.message || e)})); process.exitCode = 1; }

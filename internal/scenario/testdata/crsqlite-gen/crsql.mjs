import fs from "fs";
import { fileURLToPath } from "url";
const base = new URL("./node_modules/@vlcn.io/crsqlite-wasm/dist/", import.meta.url);
const wasmPath = fileURLToPath(new URL("crsqlite.wasm", base));
const realFetch = globalThis.fetch;
globalThis.fetch = async (u, o) => {
  const s = String(u);
  if (s.startsWith("file://")) return new Response(fs.readFileSync(fileURLToPath(s)), { headers: { "Content-Type": "application/wasm" } });
  return realFetch(u, o);
};
const { default: Factory } = await import(new URL("crsqlite.mjs", base).href);
const SQLite = await import("@vlcn.io/wa-sqlite");
const { DB } = await import(new URL("DB.js", base).href);
const mod = await Factory({ locateFile: () => "file://" + wasmPath });
const sqlite3 = SQLite.Factory(mod);
export async function open() {
  const h = await sqlite3.open_v2(":memory:", SQLite.SQLITE_OPEN_CREATE | SQLite.SQLITE_OPEN_READWRITE | SQLite.SQLITE_OPEN_URI);
  const db = new DB(sqlite3, h, ":memory:");
  const stmt = await db.prepare(`SELECT tbl_name FROM tables_used(?) AS u JOIN sqlite_master ON sqlite_master.name = u.name WHERE u.schema = 'main'`);
  stmt.raw(true);
  db._setTablesUsedStmt(stmt);
  return db;
}

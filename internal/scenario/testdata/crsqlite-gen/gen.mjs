// Generates random cr-sqlite scenarios in the format of ../crsqlite (README there),
// recorded from the real extension (@vlcn.io/crsqlite-wasm 0.16.0).
// Usage: node gen.mjs COUNT SEED > out.json
import { open } from "./crsql.mjs";

let seed = Number(process.argv[3] || 1) >>> 0;
function rnd() { // mulberry32
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const PKUPDATES = process.env.PKUPDATES === "1";
const MULTI = process.env.MULTI === "1"; // steps of several statements in one transaction
const pick = (a) => a[Math.floor(rnd() * a.length)];
const intn = (n) => Math.floor(rnd() * n);

const schemas = [
  { schema: ["CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x, y TEXT NOT NULL DEFAULT 'd')"],
    tables: { t: { columns: ["id", "x", "y"], primary_key: ["id"] } } },
  { schema: ["CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, r REAL, s TEXT, i INTEGER, n NUMERIC)"],
    tables: { t: { columns: ["id", "r", "s", "i", "n"], primary_key: ["id"] } } },
  { schema: ["CREATE TABLE c (v TEXT, g TEXT NOT NULL, n INTEGER NOT NULL, w REAL NOT NULL DEFAULT 0.0, PRIMARY KEY (g, n)) WITHOUT ROWID"],
    tables: { c: { columns: ["v", "g", "n", "w"], primary_key: ["g", "n"] } } },
  { schema: ["CREATE TABLE s (k TEXT PRIMARY KEY NOT NULL)", "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x, y TEXT NOT NULL DEFAULT 'd')"],
    tables: { s: { columns: ["k"], primary_key: ["k"] }, t: { columns: ["id", "x", "y"], primary_key: ["id"] } } },
  { schema: ["CREATE TABLE b (k BLOB NOT NULL PRIMARY KEY, v ANY, w INTEGER NOT NULL DEFAULT 0, z TEXT DEFAULT 'z')"],
    tables: { b: { columns: ["k", "v", "w", "z"], primary_key: ["k"] } } },
];
const vals = ["NULL", "1", "-5", "2", "1.0", "1.5", "10000000000.0", "'1'", "'a'", "'B'", "''", "X''", "X'01'", "X'FF'"];

function keyOf(tbl) {
  if (tbl.primary_key.length === 2) return { g: pick(["'a'", "'b'"]), n: String(intn(2)) };
  const k = tbl.primary_key[0];
  if (k === "k" && tbl.columns.includes("v")) return { k: pick(["X'00'", "X'01'", "X''"]) };
  return { [k]: k === "k" ? pick(["'a'", "'b'", "'c'"]) : String(intn(4)) };
}
function stmt(sc) {
  const name = pick(Object.keys(sc.tables));
  const tbl = sc.tables[name];
  const key = keyOf(tbl);
  const nonpk = tbl.columns.filter((c) => !tbl.primary_key.includes(c));
  const where = Object.entries(key).map(([c, v]) => `${c} = ${v}`).join(" AND ");
  const op = intn(10);
  if (op < 4 || nonpk.length === 0) {
    const verb = pick(["INSERT", "INSERT", "INSERT OR REPLACE", "INSERT OR IGNORE", "REPLACE"]);
    const cols = Object.keys(key), v = Object.values(key);
    for (const c of nonpk) if (rnd() < 0.7) { cols.push(c); v.push(pick(vals)); }
    return `${verb} INTO ${name} (${cols.join(", ")}) VALUES (${v.join(", ")})`;
  }
  if (op < 7) {
    const c = pick(nonpk);
    if (rnd() < 0.1) return `UPDATE ${name} SET ${c} = ${c} WHERE ${where}`;
    return rnd() < 0.2 ? `UPDATE ${name} SET ${c} = ${pick(vals)}` : `UPDATE ${name} SET ${c} = ${pick(vals)} WHERE ${where}`;
  }
  if (op < 8) {
    const c = pick(nonpk);
    const cols = Object.keys(key), v = Object.values(key);
    return `INSERT INTO ${name} (${cols.join(", ")}, ${c}) VALUES (${v.join(", ")}, ${pick(vals)}) ON CONFLICT DO UPDATE SET ${c} = excluded.${c}`;
  }
  if (op < 9 && PKUPDATES && tbl.primary_key.length === 1) {
    const k = tbl.primary_key[0];
    const nk = keyOf(tbl)[k];
    return `UPDATE ${name} SET ${k} = ${nk} WHERE ${where}`;
  }
  if (rnd() < 0.1) return `DELETE FROM ${name}`;
  return `DELETE FROM ${name} WHERE ${where}`;
}

async function contents(db, sc) {
  const out = {};
  for (const [name, tbl] of Object.entries(sc.tables)) {
    const rows = await db.execA(`SELECT ${tbl.columns.map((c) => `quote(${c})`).join(", ")} FROM ${name} ORDER BY ${tbl.primary_key.join(", ")}`);
    out[name] = rows.map((r) => r.map(String));
  }
  return out;
}
async function sync(from, to) {
  const rows = await from.execA(`SELECT "table", quote(pk), cid, quote(val), col_version, db_version, hex(site_id), cl, seq FROM crsql_changes ORDER BY db_version, seq`);
  await to.exec("BEGIN");
  for (const r of rows) {
    const q = (s) => "'" + String(s).replace(/'/g, "''") + "'";
    const ins = `INSERT INTO crsql_changes ("table", pk, cid, val, col_version, db_version, site_id, cl, seq) VALUES (${q(r[0])}, ${r[1]}, ${q(r[2])}, ${r[3]}, ${r[4]}, ${r[5]}, X'${r[6]}', ${r[7]}, ${r[8]})`;
    try { await to.exec(ins); } catch (e) { console.error("SYNC FAILED: " + ins); throw e; }
  }
  await to.exec("COMMIT");
  return rows;
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const count = Number(process.argv[2] || 10);
const out = [];
for (let s = 0; s < count; s++) {
  const sc = pick(schemas);
  const n = 2 + intn(3);
  const dbs = [], sites = [];
  for (let i = 0; i < n; i++) {
    const db = await open();
    for (const q of sc.schema) await db.exec(q);
    for (const t of Object.keys(sc.tables)) await db.exec(`SELECT crsql_as_crr('${t}')`);
    dbs.push(db);
    sites.push(String((await db.execA("SELECT hex(crsql_site_id())"))[0][0]));
  }
  const steps = [];
  const nsteps = 4 + intn(Number(process.env.MAXSTEPS || 12));
  for (let k = 0; k < nsteps; k++) {
    if (rnd() < 0.3) {
      const from = intn(n); let to = intn(n); if (to === from) to = (to + 1) % n;
      await sync(dbs[from], dbs[to]);
      steps.push({ sync: { from, to }, changes: [], after: await contents(dbs[to], sc) });
    } else {
      const r = intn(n);
      const k = MULTI ? 1 + intn(4) : 1;
      const stmts = [];
      for (let j = 0; j < k; j++) stmts.push(stmt(sc));
      const sql = stmts.join("; ");
      const st = { replica: r, sql };
      if (k === 1) {
        try { await dbs[r].exec(sql); } catch (e) { st.error = true; st.error_message = String(e.message || e); }
      } else {
        // One transaction, all or nothing, as Patina's POST /v1/transactions.
        await dbs[r].exec("BEGIN");
        try {
          for (const q of stmts) await dbs[r].exec(q);
          await dbs[r].exec("COMMIT");
        } catch (e) {
          st.error = true; st.error_message = String(e.message || e);
          await dbs[r].exec("ROLLBACK");
        }
      }
      st.after = await contents(dbs[r], sc);
      steps.push(st);
    }
  }
  const final_sync = [];
  for (let round = 0; round < 3; round++) {
    for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) if (a !== b) { await sync(dbs[a], dbs[b]); final_sync.push({ from: a, to: b }); }
    const cs = await Promise.all(dbs.map((d) => contents(d, sc)));
    if (cs.every((c) => same(c, cs[0]))) break;
  }
  const final = await contents(dbs[0], sc);
  for (const d of dbs) if (!same(await contents(d, sc), final)) throw new Error("replicas differ in scenario " + s);
  const clock = (await dbs[0].execA(`SELECT "table", quote(pk), cid, quote(val), col_version, cl FROM crsql_changes ORDER BY "table", pk, cid`)).map((r) => [r[0], r[1], r[2], String(r[3]), r[4], r[5]]);
  out.push({ name: `random-${process.argv[3] || 1}-${s}`, schema: sc.schema, tables: sc.tables, replicas: n, site_ids: sites, steps, final_sync, final, final_clock: clock });
  for (const d of dbs) await d.close();
}
process.stdout.write(JSON.stringify(out));

// Copies the browser assets that package.json names under "tessera.vendor" from
// node_modules/ (filled by `npm ci` from package-lock.json) into platform/static/vendor/,
// with each package's licence (under licenses/) and MANIFEST.json: per file its package,
// version, the lock's integrity hash and the file's sha256. The result is committed, so a
// fresh machine needs no npm; tests/test_vendored_assets.py holds it to package-lock.json.
// Run from the repository root by `make assets` and by the Dockerfile's assets stage.
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const root = process.argv[2] || process.cwd();
const tessera = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).tessera;
const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")).packages;
const target = join(root, "platform", "static", "vendor");

function packageOf(source) {
  const parts = source.split("/");
  return parts[0].startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0];
}

function copy(source, name) {
  const from = join(root, "node_modules", source);
  if (!existsSync(from)) {
    console.error(`vendor_assets: ${from} is missing: run \`npm ci\` first`);
    process.exit(1);
  }
  mkdirSync(dirname(join(target, name)), { recursive: true });
  copyFileSync(from, join(target, name));
  const bytes = readFileSync(from);
  console.log(`vendor_assets: ${name} <- ${source} (${bytes.length} bytes)`);
  return createHash("sha256").update(bytes).digest("hex");
}

rmSync(target, { recursive: true, force: true });
mkdirSync(target, { recursive: true });
const manifest = { files: {}, packages: {} };
for (const [name, source] of Object.entries(tessera.vendor)) {
  const pkg = packageOf(source);
  manifest.files[name] = { package: pkg, source, sha256: copy(source, name) };
}
for (const [pkg, source] of Object.entries(tessera.licences)) {
  const entry = lock[`node_modules/${pkg}`];
  const licence = `licenses/${pkg}-${source.split("/").pop()}`;
  manifest.packages[pkg] = {
    version: entry.version, integrity: entry.integrity, license: entry.license,
    licence_file: licence, licence_sha256: copy(source, licence),
  };
}
writeFileSync(join(target, "MANIFEST.json"), JSON.stringify(manifest, null, 2) + "\n");

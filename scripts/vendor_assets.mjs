// Copies the browser assets that package.json names under "tessera.vendor" from
// node_modules/ (filled by `npm ci` from package-lock.json) into platform/static/vendor/,
// where Django serves them: pages never load a script or a style from another host.
// Run from the repository root by `make assets` and by the Dockerfile's assets stage.
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";

const root = process.argv[2] || process.cwd();
const vendor = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).tessera.vendor;
const target = join(root, "platform", "static", "vendor");

rmSync(target, { recursive: true, force: true });
mkdirSync(target, { recursive: true });
for (const [name, source] of Object.entries(vendor)) {
  const from = join(root, "node_modules", source);
  if (!existsSync(from)) {
    console.error(`vendor_assets: ${from} is missing: run \`npm ci\` first`);
    process.exit(1);
  }
  mkdirSync(dirname(join(target, name)), { recursive: true });
  copyFileSync(from, join(target, name));
  console.log(`vendor_assets: ${name} <- ${source} (${statSync(from).size} bytes)`);
}

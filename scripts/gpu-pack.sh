#!/usr/bin/env bash
# Packs into .gpu/ what the GPU machine needs and cannot fetch (it has no network and no bun):
#   .gpu/bun.xz + bun.version   the bun binary of node_modules/bun, stripped, xz -9e (reused when
#                               the version matches: compressing takes minutes)
#   .gpu/node_modules.tar.xz    the runtime packages only (package-lock.json's non-dev closure),
#                               without type declarations, source maps or zod's TypeScript sources
#   .gpu/unpack                 run there first: `bash .gpu/unpack`
# .gpu/ is git-ignored; the device tool carries it when asked (carry: [".gpu"]). Everything that
# travels (tracked + untracked-not-ignored files + .gpu) must stay under 64 MiB: sizes printed last.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
GPU=.gpu
LIMIT=$((64 * 1024 * 1024))
mkdir -p "$GPU"

bun_version=$(python3 -c 'import json; print(json.load(open("node_modules/bun/package.json"))["version"])')

pack_bun() {
  if [ -f "$GPU/bun.xz" ] && [ "$(cat "$GPU/bun.version" 2>/dev/null)" = "$bun_version" ]; then
    echo "bun $bun_version: reusing $GPU/bun.xz"
    return
  fi
  if [ -f "$GPU/bun.xz" ] && [ ! -f "$GPU/bun.version" ]; then
    echo "error: $GPU/bun.xz has no bun.version (still being written?); wait for it or remove both" >&2
    exit 1
  fi
  echo "bun $bun_version: stripping and compressing (xz -9e takes a few minutes)"
  local tmp
  tmp=$(mktemp -d)
  cp node_modules/bun/bin/bun.exe "$tmp/bun"
  strip "$tmp/bun"
  xz -9e -T0 -c "$tmp/bun" > "$GPU/bun.xz.tmp"
  rm -rf "$tmp"
  mv "$GPU/bun.xz.tmp" "$GPU/bun.xz"
  echo "$bun_version" > "$GPU/bun.version"
}

# node_modules/<name> of every package the lockfile does not mark dev (the runtime closure).
runtime_packages() {
  python3 - <<'EOF'
import json
lock = json.load(open("package-lock.json"))
for path, meta in sorted(lock["packages"].items()):
    if path.startswith("node_modules/") and not meta.get("dev") and not meta.get("optional"):
        print(path)
EOF
}

pack_node_modules() {
  mapfile -t pkgs < <(runtime_packages)
  for p in "${pkgs[@]}"; do [ -d "$p" ] || { echo "error: $p missing: run make deps" >&2; exit 1; }; done
  echo "runtime packages: ${pkgs[*]#node_modules/}"
  tar -cf - --sort=name --owner=0 --group=0 --numeric-owner \
    --exclude='*.d.ts' --exclude='*.d.cts' --exclude='*.d.mts' --exclude='*.map' --exclude='node_modules/zod/src' \
    "${pkgs[@]}" | xz -9e -T0 > "$GPU/node_modules.tar.xz.tmp"
  mv "$GPU/node_modules.tar.xz.tmp" "$GPU/node_modules.tar.xz"
  sha256sum "$GPU/node_modules.tar.xz" | cut -d' ' -f1 > "$GPU/node_modules.sha256"
}

# Unpacks the tarball alone in a scratch directory and imports every runtime package from there.
check_node_modules() {
  local tmp
  tmp=$(mktemp -d)
  tar -C "$tmp" -xJf "$GPU/node_modules.tar.xz"
  cat > "$tmp/check.ts" <<'EOF'
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { z } from "zod";
import { encode, decode } from "@msgpack/msgpack";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
if (typeof Hono !== "function" || typeof streamSSE !== "function" || typeof Tokenizer !== "function" || typeof Template !== "function") throw new Error("missing export");
if (decode(encode({ a: 1 })) === null || !z.number().safeParse(1).success) throw new Error("broken package");
console.log("runtime packages import cleanly from the tarball alone");
EOF
  (cd "$tmp" && "$ROOT/node_modules/.bin/bun" check.ts)
  rm -rf "$tmp"
}

write_unpack() {
  cat > "$GPU/unpack" <<'EOF'
#!/usr/bin/env bash
# On the GPU machine (no network, no bun): puts bun at .gpu/bin/bun and node_modules/.bin/bun, and
# the runtime packages under node_modules/. Idempotent; never touches a dev checkout's node_modules.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
unxz_to_stdout() {
  if command -v xz > /dev/null; then xz -dc "$1"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi
}
want=$(cat "$here/bun.version")
if [ "$("$here/bin/bun" --version 2> /dev/null || true)" != "$want" ]; then
  mkdir -p "$here/bin"
  unxz_to_stdout "$here/bun.xz" > "$here/bin/bun.tmp"
  chmod +x "$here/bin/bun.tmp"
  mv "$here/bin/bun.tmp" "$here/bin/bun"
fi
nm="$root/node_modules"
if [ -f "$nm/.installed" ]; then
  echo "unpack: $nm is an npm install (node_modules/.installed); left as it is"
elif ! cmp -s "$here/node_modules.sha256" "$nm/.gpu-unpacked" 2> /dev/null; then
  mkdir -p "$nm"
  unxz_to_stdout "$here/node_modules.tar.xz" | tar -C "$root" -xf -
  cp "$here/node_modules.sha256" "$nm/.gpu-unpacked"
fi
mkdir -p "$nm/.bin"
[ -e "$nm/.bin/bun" ] || ln -s ../../.gpu/bin/bun "$nm/.bin/bun"
echo "unpack: bun $("$nm/.bin/bun" --version), runtime packages in $nm"
EOF
  chmod +x "$GPU/unpack"
}

print_sizes() {
  local tracked untracked gpu total
  tracked=$(git ls-files -z | xargs -0 -r stat -c %s 2> /dev/null | awk '{s += $1} END {print s + 0}')
  untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r stat -c %s 2> /dev/null | awk '{s += $1} END {print s + 0}')
  gpu=$(find "$GPU" -maxdepth 1 -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  total=$((tracked + untracked + gpu))
  ls -l "$GPU"
  mib() { awk -v b="$1" 'BEGIN {printf "%.2f MiB", b / 1048576}'; }
  echo "tracked files:          $(mib "$tracked")"
  echo "untracked, not ignored: $(mib "$untracked")"
  echo ".gpu (bun $(mib "$(stat -c %s "$GPU/bun.xz")"), node_modules $(mib "$(stat -c %s "$GPU/node_modules.tar.xz")")): $(mib "$gpu")"
  echo "travels in all:         $(mib "$total") of 64 MiB"
  if [ "$total" -ge "$LIMIT" ]; then echo "error: over the 64 MiB the device tool carries" >&2; exit 1; fi
}

pack_bun
pack_node_modules
check_node_modules
write_unpack
print_sizes

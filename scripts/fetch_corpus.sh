#!/usr/bin/env bash
# Builds the training corpus of the built-in default model from Debian packages.
#
#   scripts/fetch_corpus.sh [OUT_DIR]      (default: corpus/)
#
# Needs apt-get (Debian/Ubuntu), dpkg-deb, python3 (standard library only) and xz.
# Writes OUT_DIR/corpus.jsonl.xz (one JSON document a line: source, split "train" or "val", text),
# OUT_DIR/heldout.txt (plain text, never trained on) and OUT_DIR/SOURCES.md (packages, versions,
# licence lines). The result is deterministic for the same package versions.
set -euo pipefail

OUT_DIR=$(realpath -m "${1:-corpus}")
WORK=$(mktemp -d /tmp/vllmd-corpus.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# bible-kjv holds only the reader program: its data (bible-kjv-text) is a compressed custom format
# that the reader decodes, so we dump every verse with it instead of re-implementing the format.
PACKAGES=(bible-kjv-text bible-kjv fortunes fortunes-min dict-devil)

apt-get update -qq
mkdir -p "$WORK/debs" "$WORK/root" "$OUT_DIR"
(cd "$WORK/debs" && apt-get download -q "${PACKAGES[@]}")
for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$WORK/root"; done

: >"$WORK/versions.tsv"
for deb in "$WORK"/debs/*.deb; do
  printf '%s\t%s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" >>"$WORK/versions.tsv"
done

# All 31,102 verses, one a line, each prefixed by its reference (e.g. "1Sa3:10 ...").
"$WORK/root/usr/bin/bible" -f -p "$WORK/root/usr/lib" "gen1:1-rev22:21" </dev/null >"$WORK/kjv.txt"

python3 - "$WORK" "$OUT_DIR" <<'PY'
import gzip, json, lzma, re, sys
from pathlib import Path

work, out = Path(sys.argv[1]), Path(sys.argv[2])
root = work / "root"
FORTUNE_DIR = root / "usr/share/games/fortunes"
# Not prose (ascii-art), a single modern author's copyrighted novels (pratchett), and a joke set
# that only exists to be translated (translate-me). The offensive sets live in fortunes-off,
# which we never download.
FORTUNE_SKIP = {"ascii-art", "pratchett", "translate-me"}
# Contiguous held-out slices, chosen before any training: the test text (heldout.txt) and a
# validation slice for early stopping. KJV by book, the others by position in document order.
KJV_TEST_BOOK, KJV_VAL_BOOK = "Ruth", "Jonah"
TEST_AT, VAL_AT = 0.40, 0.70          # start of each slice, as a fraction of the document list
FORTUNE_SLICE_BYTES, DEVIL_SLICE_BYTES = 20000, 9000


def clean_lines(text):
    text = re.sub(r".\x08", "", text)                         # overstrike (x BS y prints y)
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text.expandtabs(4))
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


def kjv_chapters():
    """Each chapter is one document: its verses, one a line, without the reference markup."""
    ref = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")
    chapters = {}
    for line in (work / "kjv.txt").read_text(encoding="utf-8").splitlines():
        m = ref.match(line)
        if not m:
            raise SystemExit(f"unexpected line from bible: {line!r}")
        chapters.setdefault((m[1], int(m[2])), []).append(m[4].strip())
    verses = sum(len(v) for v in chapters.values())
    if verses != 31102:
        raise SystemExit(f"expected 31102 KJV verses, got {verses}")
    return [(book, "\n".join(vs)) for (book, _), vs in chapters.items()]


def fortunes():
    docs = []
    for path in sorted(FORTUNE_DIR.iterdir()):
        if path.suffix in (".dat", ".u8") or path.is_symlink() or path.name in FORTUNE_SKIP:
            continue
        raw = path.read_bytes().decode("utf-8", errors="replace")
        for cookie in re.split(r"^%$", raw, flags=re.M):
            text = clean_lines(cookie)
            if text:
                docs.append(text)
    return docs


def devil_entries():
    """The Devil's Dictionary, one entry a document, in the dictd index's order (alphabetical)."""
    data = gzip.decompress((root / "usr/share/dictd/devil.dict.dz").read_bytes())
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    num = lambda s: sum(b64.index(c) * 64 ** i for i, c in enumerate(reversed(s)))
    spans = []
    for line in (root / "usr/share/dictd/devil.index").read_text(encoding="utf-8").splitlines():
        word, off, length = line.split("\t")
        if not word.startswith("00database"):
            spans.append((num(off), num(length)))
    docs = []
    for off, length in sorted(set(spans)):
        text = data[off:off + length].decode("utf-8", errors="replace").replace("_", "")
        text = clean_lines(text)
        if text:
            docs.append(text)
    return docs


def slice_by_bytes(docs, start_frac, nbytes):
    start = int(len(docs) * start_frac)
    end, size = start, 0
    while end < len(docs) and size < nbytes:
        size += len(docs[end].encode()) + 2
        end += 1
    return start, end


def split_positional(docs, name):
    t0, t1 = slice_by_bytes(docs, TEST_AT, FORTUNE_SLICE_BYTES if name == "fortunes" else DEVIL_SLICE_BYTES)
    v0, v1 = slice_by_bytes(docs, VAL_AT, FORTUNE_SLICE_BYTES if name == "fortunes" else DEVIL_SLICE_BYTES)
    assert t1 <= v0, "test and validation slices overlap"
    split = ["train"] * len(docs)
    split[t0:t1] = ["test"] * (t1 - t0)
    split[v0:v1] = ["val"] * (v1 - v0)
    return list(zip(split, docs))


records = [("kjv", "test" if book == KJV_TEST_BOOK else "val" if book == KJV_VAL_BOOK else "train", text)
           for book, text in kjv_chapters()]
records += [("fortunes", s, t) for s, t in split_positional(fortunes(), "fortunes")]
records += [("devil", s, t) for s, t in split_positional(devil_entries(), "devil")]

heldout = "\n\n".join(t for _, s, t in records if s == "test") + "\n"
(out / "heldout.txt").write_text(heldout, encoding="utf-8")
with lzma.open(out / "corpus.jsonl.xz", "wt", encoding="utf-8", preset=9) as f:
    for source, split, text in records:
        if split != "test":
            f.write(json.dumps({"source": source, "split": split, "text": text}, ensure_ascii=False) + "\n")

stats = {}
for source, split, text in records:
    s = stats.setdefault((source, split), [0, 0])
    s[0] += 1
    s[1] += len(text.encode())
json.dump({f"{a}/{b}": v for (a, b), v in sorted(stats.items())}, open(work / "stats.json", "w"), indent=1)
for (source, split), (n, size) in sorted(stats.items()):
    print(f"{source:9s} {split:5s} {n:6d} docs {size / 1e6:7.3f} MB")
PY

# SOURCES.md: package, version and the licence lines of each package's copyright file.
{
  echo "# Sources of the default model's corpus"
  echo
  echo "Generated by scripts/fetch_corpus.sh from Debian packages (bookworm). Every text below is"
  echo "public domain or redistributable under the licence quoted from the package's copyright file."
  echo
  echo "| package | version | used for |"
  echo "| --- | --- | --- |"
  while IFS=$'\t' read -r pkg ver; do
    case $pkg in
      bible-kjv-text) use="the King James Version (1611), all 1,189 chapters; public domain (copyright expired)";;
      bible-kjv) use="only its reader program \`bible\`, run to decode bible-kjv-text's data; no text from it";;
      fortunes) use="fortune cookies, all sets but ascii-art, pratchett and translate-me (offensive sets are in fortunes-off, not used)";;
      fortunes-min) use="fortune cookies: fortunes, literature, riddles";;
      dict-devil) use="The Devil's Dictionary by Ambrose Bierce (1911); public domain (copyright expired)";;
      *) use="";;
    esac
    echo "| $pkg | $ver | $use |"
  done <"$WORK/versions.tsv"
  echo
  echo "Documents per source and split (bytes of UTF-8 text; \"test\" is corpus/heldout.txt, never"
  echo "trained on; \"val\" is used only to choose the checkpoint):"
  echo
  echo '```'
  python3 -c 'import json,sys; [print(f"{k:16s} {v[0]:6d} docs {v[1]:9d} bytes") for k,v in json.load(open(sys.argv[1])).items()]' "$WORK/stats.json"
  echo '```'
  for pkg in bible-kjv-text fortunes dict-devil; do
    echo
    echo "## $pkg: licence lines from /usr/share/doc/$pkg/copyright"
    echo
    echo '```'
    case $pkg in
      bible-kjv-text) grep -i -A2 'copyright for the King James' "$WORK/root/usr/share/doc/$pkg/copyright";;
      fortunes) sed -n '/This program falls under the BSD copyright/,/SUCH DAMAGE/p' "$WORK/root/usr/share/doc/$pkg/copyright";;
      dict-devil) grep -i -B1 -A1 'public domain' "$WORK/root/usr/share/doc/$pkg/copyright";;
    esac
    echo '```'
  done
  echo
  echo "fortunes-min is built from the same fortune-mod source as fortunes and carries the same"
  echo "copyright file. The fortune files quote many authors; they are redistributed by Debian as"
  echo "part of fortune-mod under the licence above."
} >"$OUT_DIR/SOURCES.md"

ls -l "$OUT_DIR"

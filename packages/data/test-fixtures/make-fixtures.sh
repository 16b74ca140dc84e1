#!/usr/bin/env bash
# Writes the corpus fixtures of @peer/data's gzip and Parquet tests with tools independent of the
# readers under test: gzip files with the `gzip` command, Parquet files with parquet-wasm (the Rust
# `parquet` crate compiled to wasm, fed by apache-arrow), installed into a temporary folder so that
# they never become dependencies of the package. The fixtures are committed; rerun this only to
# change them:  bash packages/data/test-fixtures/make-fixtures.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
npm install --prefix "$tools" --no-audit --no-fund --loglevel=error parquet-wasm@0.8.0 apache-arrow@21.2.0

# 1. The documents (docs.jsonl, docs.txt) and the Parquet files.
TOOLS="$tools" node make-fixtures.mjs

# 2. gzip, by the command line tool. -n: no name or time stamp in the header (reproducible bytes).
gzip -9 -n -c docs.jsonl > docs.jsonl.gz
gzip -9 -n -c docs.jsonl > docs.json.gz
gzip -9 -n -c docs.txt > docs.txt.gz
# Two members, as `cat a.gz b.gz` makes: one stream of both texts.
head -n 20 docs.jsonl | gzip -1 -n -c > two-members.jsonl.gz
tail -n +21 docs.jsonl | gzip -9 -n -c >> two-members.jsonl.gz
# Damaged copies: cut short, and bytes overwritten in the middle of the compressed data.
size=$(wc -c < docs.jsonl.gz)
head -c $((size / 2)) docs.jsonl.gz > truncated.jsonl.gz
cp docs.jsonl.gz corrupt.jsonl.gz
printf '\xff\xff\xff\xff\xff\xff\xff\xff' | dd of=corrupt.jsonl.gz bs=1 seek=$((size / 3)) conv=notrunc status=none
printf 'not gzip at all\n' > not-gzip.jsonl.gz
# A folder of shards and one whole-document text file.
rm -rf shards && mkdir -p shards/en
head -n 15 docs.jsonl | gzip -9 -n -c > shards/en/c4-train.00000-of-00003.json.gz
sed -n '16,30p' docs.jsonl | gzip -9 -n -c > shards/en/c4-train.00001-of-00003.json.gz
tail -n +31 docs.jsonl | gzip -9 -n -c > shards/en/c4-train.00002-of-00003.json.gz
printf 'A note, one document.\n' | gzip -9 -n -c > shards/note.txt.gz
echo "fixtures written in $here"

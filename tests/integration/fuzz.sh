#!/bin/bash
# The libFuzzer harnesses (tests/fuzz/fuzz_NAME.c, `make fuzz`) for a few
# seconds each: `make fuzz-build` (clang-14, ASan + UBSan, into build-fuzz/),
# then every harness from its seeds (tests/fuzz/corpus/NAME/) for FUZZ_S
# seconds (default 4).  A crash, leak or sanitizer report fails its test;
# the input is kept as build-fuzz/crash-NAME-* and printed in base64.
# Skipped without clang-14 or its libFuzzer runtime (libclang-rt-14-dev).
. "$(dirname "$0")/lib.sh"
FUZZ_CC=${FUZZ_CC:-clang-14}
FUZZ_S=${FUZZ_S:-4}
NAMES=()
for f in "$TOP"/tests/fuzz/fuzz_*.c; do n=${f##*/fuzz_}; NAMES+=("fuzz-${n%.c}"); done
command -v "$FUZZ_CC" >/dev/null || skip_all "needs $FUZZ_CC (make check installs it)" fuzz-build "${NAMES[@]}"
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' >"$WORK/probe.c"
"$FUZZ_CC" -fsanitize=fuzzer,address,undefined -o "$WORK/probe" "$WORK/probe.c" >"$WORK/probe.log" 2>&1 ||
	skip_all "$FUZZ_CC cannot link a libFuzzer harness (libclang-rt-14-dev missing?): $(head -c 200 "$WORK/probe.log")" \
		fuzz-build "${NAMES[@]}"

if make -C "$TOP" -j"$(nproc)" FUZZ_CC="$FUZZ_CC" fuzz-build >"$WORK/build.log" 2>&1; then
	ok fuzz-build
else
	not_ok fuzz-build; tail -30 "$WORK/build.log"; exit 1
fi

for t in "${NAMES[@]}"; do
	n=${t#fuzz-} bin=$TOP/build-fuzz/fuzz_${t#fuzz-}
	rm -f "$TOP"/build-fuzz/crash-"$n"-* "$TOP"/build-fuzz/leak-"$n"-* "$TOP"/build-fuzz/timeout-"$n"-*
	mkdir -p "$WORK/corpus-$n"
	"$bin" -max_total_time="$FUZZ_S" -timeout=10 -artifact_prefix="$TOP/build-fuzz/crash-$n-" \
		"$WORK/corpus-$n" "$TOP/tests/fuzz/corpus/$n" >"$WORK/$n.log" 2>&1
	rc=$?
	if [ $rc = 0 ] && grep -q '^Done [0-9]* runs' "$WORK/$n.log"; then
		ok "$t"
	else
		not_ok "$t"; echo "exit $rc"
		grep -E '^(==[0-9]+==ERROR|SUMMARY|    #[0-9]+ )' "$WORK/$n.log" | head -30
		for a in "$TOP"/build-fuzz/crash-"$n"-*; do
			[ -f "$a" ] && echo "input $a (base64): $(base64 -w0 <"$a" | head -c 2000)"
		done
	fi
done
exit 0

#!/bin/sh
# The whole suite (`make test`): unit tests, style, then integration tests on real KVM
# (this host's /dev/kvm, or ci/kvm-harness), and one closing line "N passed, M failed, K skipped"
# (a check that could not run is a "skip - ..." line: counted as skipped, never as passed).
# Usage: tests/run-all.sh UNIT_BINARY...   (paths of the integration inputs come from the
# environment the Makefile sets: WISP_BIN, WISP_KERNEL_DIR, WISP_INITRD...)
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
log=$(mktemp /tmp/wisp-test.XXXXXX)
trap 'rm -f "$log"' EXIT

echo "== unit tests (cmocka)"
"$here/run-unit.sh" "$@" | tee -a "$log"

echo "== style (clang-format)"
files=$(cd "$top" && find vmm api tests guest/init jailer -name '*.[ch]')
if (cd "$top" && clang-format --dry-run --Werror $files) >/dev/null 2>&1; then
	echo "ok - style/clang-format" | tee -a "$log"
else
	echo "not ok - style/clang-format (run: make format)" | tee -a "$log"
fi

echo "== API contract (against Firecracker's swagger)"
if [ -f "$FIRECRACKER_SWAGGER" ]; then
	schema=$(mktemp /tmp/wisp-schema.XXXXXX)
	if "$WISP_BIN" --api-schema >"$schema"; then
		/usr/bin/python3 "$here/api_contract.py" "$FIRECRACKER_SWAGGER" "$schema" >"$schema.out" 2>&1
		contract_status=$?
		cat "$schema.out"
		grep -E '^(not )?ok - ' "$schema.out" >>"$log"
		if [ $contract_status != 0 ] && ! grep -q '^not ok - ' "$schema.out"; then
			echo "not ok - contract/api_contract.py (exit status $contract_status)" | tee -a "$log"
		fi
		rm -f "$schema.out"
	else
		echo "not ok - contract/wisp --api-schema" | tee -a "$log"
	fi
	rm -f "$schema"
else
	echo "skip - contract/api_contract.py (no swagger file at '$FIRECRACKER_SWAGGER')" | tee -a "$log"
	echo "# (set FIRECRACKER_SWAGGER=PATH, e.g. make test FIRECRACKER_SWAGGER=...)"
fi

echo "== fuzzing (libFuzzer, a fixed number of runs from the committed seeds)"
for fuzzer in $WISP_FUZZERS; do
	name=$(basename "$fuzzer")
	corpus=$(mktemp -d /tmp/wisp-corpus.XXXXXX)
	cp "$top/tests/fuzz/corpus/${name#fuzz_}"/* "$corpus/"
	if (cd "$corpus" && "$fuzzer" -runs="${WISP_FUZZ_RUNS:-200000}" -artifact_prefix="$corpus/" \
		"$corpus" >"$corpus.log" 2>&1); then
		echo "ok - fuzz/$name ($(grep -o 'Done [0-9]* runs in [0-9]* second' "$corpus.log"))" | tee -a "$log"
	else
		echo "not ok - fuzz/$name" | tee -a "$log"
		tail -n 30 "$corpus.log" | sed 's/^/    /'
	fi
	rm -rf "$corpus" "$corpus.log"
done

echo "== integration tests (real KVM)"
"$top/ci/with-kvm.sh" python3 "$here/integration/run.py" >"$log.integration" 2>&1 &
runner=$!
tail -f -n +1 --pid=$runner "$log.integration" 2>/dev/null &
wait $runner
status=$?
sleep 0.2
# A job the harness restarted (its L1 machine hung) counts from the restart on: run.py
# then prints again the results of the tests that ended before it (see run.py).
awk '/^kvm-harness: restarting the job/ { kept = "" } { kept = kept $0 "\n" } END { printf "%s", kept }' \
	"$log.integration" | grep -E '^((not )?ok|skip) - ' >>"$log"
if [ $status != 0 ] && ! grep -q '^not ok - ' "$log"; then
	echo "not ok - integration runner (exit status $status without a failing test)" | tee -a "$log"
fi
rm -f "$log.integration"

passed=$(grep -c '^ok - ' "$log")
failed=$(grep -c '^not ok - ' "$log")
skipped=$(grep -c '^skip - ' "$log")
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]

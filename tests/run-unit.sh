#!/bin/sh
# Runs cmocka unit test binaries and prints one line per test:
#   ok - unit/<binary>/<test>     or     not ok - unit/<binary>/<test>
# A binary that dies without reporting its tests counts as one failure.
# Exits 1 if anything failed.
failed=0
for bin in "$@"; do
	name=$(basename "$bin")
	out=$(CMOCKA_MESSAGE_OUTPUT=TAP "$bin" 2>&1)
	status=$?
	printf '%s\n' "$out" | sed -n \
		-e "s|^ok [0-9]* - \(.*\)|ok - unit/$name/\1|p" \
		-e "s|^not ok [0-9]* - \(.*\)|not ok - unit/$name/\1|p"
	if printf '%s\n' "$out" | grep -q '^not ok'; then
		failed=1
		printf '%s\n' "$out" | grep -v '^ok ' | sed 's/^/    /'
	elif [ $status != 0 ] || ! printf '%s\n' "$out" | grep -q '^ok '; then
		failed=1
		echo "not ok - unit/$name (exit status $status without a test report)"
		printf '%s\n' "$out" | tail -n 20 | sed 's/^/    /'
	fi
done
exit $failed

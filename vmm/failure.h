/*
 * Where a failure came from, which decides wisp's exit status (README, "Exit status"):
 * the user's input (a file, a TAP device, an option or value: exit 2) or the VMM and its
 * host (KVM, memory, file descriptors, threads: exit 1).
 *
 * The code that meets the failure says which, through the `enum failure_origin *` its
 * caller passes down, just before it returns the error; nothing else sets it. It is never
 * guessed later from the errno value: the same number means either (EINVAL from
 * KVM_IOEVENTFD is wisp's, EINVAL from a TAP that is not a TAP is the user's).
 */
#ifndef WISP_FAILURE_H
#define WISP_FAILURE_H

enum failure_origin {
	FAILURE_VMM,	   /* the default: whatever the user cannot fix by changing the input */
	FAILURE_BAD_INPUT, /* the user's files, devices, options or values */
};

/* origin may be NULL: the caller does not care (tests, run-time updates through the API). */
static inline void failure_blame(enum failure_origin *origin, enum failure_origin value)
{
	if (origin)
		*origin = value;
}

#endif

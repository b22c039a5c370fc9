/* wispctl's pure logic: see wispctl_lib.h. */
#define _GNU_SOURCE
#include "wispctl_lib.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: wispctl [--state-dir DIR] [--wisp PATH] [--timeout S] COMMAND ...\n"
    "  snapshot --kernel K [--initrd I] [--rootfs R] [--mem M] [--vcpus N] [--cmdline C]\n"
    "           [--warm-marker TEXT] [--net] [--balloon MIB] -o DIR\n"
    "      boot a function VM, wait for its warm marker, pause, snapshot into DIR, stop\n"
    "  clone DIR --count N [--parallel P] [--tap-pattern PAT] [--min-available MIB] [--jail]\n"
    "      start N wisp processes restored from DIR, each with its id, socket and TAP\n"
    "  invoke ID|--all REQUEST   send REQUEST to the guest function, print its answer\n"
    "  balloon ID|--all MIB      PATCH /balloon {\"amount_mib\": MIB}\n"
    "  ls                        id, state, pid, RSS, PSS and uptime of every clone\n"
    "  reap ID|--all             stop clones, remove their sockets, TAPs and files\n"
    "State: DIR/clones/<id>/ (default " WISPCTL_DEFAULT_STATE_DIR
    ", or $WISPCTL_STATE_DIR). TAP pattern default " WISPCTL_DEFAULT_TAP_PATTERN ".\n";

const char *wispctl_usage(void)
{
	return usage_text;
}

enum opt {
	OPT_STATE_DIR = 256,
	OPT_WISP,
	OPT_TIMEOUT,
	OPT_KERNEL,
	OPT_INITRD,
	OPT_ROOTFS,
	OPT_MEM,
	OPT_VCPUS,
	OPT_CMDLINE,
	OPT_WARM,
	OPT_NET,
	OPT_BALLOON,
	OPT_OUT,
	OPT_COUNT,
	OPT_PARALLEL,
	OPT_TAP_PATTERN,
	OPT_MIN_AVAIL,
	OPT_JAIL,
	OPT_ALL,
	OPT_HELP,
	OPT_END,
};

#define BIT(o)	    (1ULL << ((o)-OPT_STATE_DIR))
#define GLOBAL_OPTS (BIT(OPT_STATE_DIR) | BIT(OPT_WISP) | BIT(OPT_TIMEOUT) | BIT(OPT_HELP))

static const struct option long_options[] = {
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"wisp", required_argument, NULL, OPT_WISP},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"kernel", required_argument, NULL, OPT_KERNEL},
    {"initrd", required_argument, NULL, OPT_INITRD},
    {"rootfs", required_argument, NULL, OPT_ROOTFS},
    {"mem", required_argument, NULL, OPT_MEM},
    {"vcpus", required_argument, NULL, OPT_VCPUS},
    {"cmdline", required_argument, NULL, OPT_CMDLINE},
    {"warm-marker", required_argument, NULL, OPT_WARM},
    {"net", no_argument, NULL, OPT_NET},
    {"balloon", required_argument, NULL, OPT_BALLOON},
    {"output", required_argument, NULL, OPT_OUT},
    {"count", required_argument, NULL, OPT_COUNT},
    {"parallel", required_argument, NULL, OPT_PARALLEL},
    {"tap-pattern", required_argument, NULL, OPT_TAP_PATTERN},
    {"min-available", required_argument, NULL, OPT_MIN_AVAIL},
    {"jail", no_argument, NULL, OPT_JAIL},
    {"all", no_argument, NULL, OPT_ALL},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static const char *option_name(int opt)
{
	for (const struct option *o = long_options; o->name; o++)
		if (o->val == opt)
			return o->name;
	return "?";
}

/* A decimal number in [min, max]. */
static int parse_uint(const char *text, unsigned min, unsigned max, unsigned *out)
{
	unsigned long long value;
	char *end;

	if (!text || !*text || *text == '-' || *text == '+')
		return -EINVAL;
	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno || *end || value < min || value > max)
		return -EINVAL;
	*out = (unsigned)value;
	return 0;
}

static int copy_string(char *out, size_t size, const char *text)
{
	size_t len = strlen(text);

	if (len >= size)
		return -ENAMETOOLONG;
	memcpy(out, text, len + 1);
	return 0;
}

static const struct {
	const char *name;
	enum wispctl_command command;
	unsigned long long options; /* beyond the global ones */
	int min_positional, max_positional;
} commands[] = {
    {"snapshot", WISPCTL_SNAPSHOT,
     BIT(OPT_KERNEL) | BIT(OPT_INITRD) | BIT(OPT_ROOTFS) | BIT(OPT_MEM) | BIT(OPT_VCPUS) |
	 BIT(OPT_CMDLINE) | BIT(OPT_WARM) | BIT(OPT_NET) | BIT(OPT_BALLOON) | BIT(OPT_OUT),
     0, 0},
    {"clone", WISPCTL_CLONE,
     BIT(OPT_COUNT) | BIT(OPT_PARALLEL) | BIT(OPT_TAP_PATTERN) | BIT(OPT_MIN_AVAIL) | BIT(OPT_JAIL),
     1, 1},
    {"invoke", WISPCTL_INVOKE, BIT(OPT_ALL), 1, 2},
    {"balloon", WISPCTL_BALLOON, BIT(OPT_ALL), 1, 2},
    {"ls", WISPCTL_LS, 0, 0, 0},
    {"reap", WISPCTL_REAP, BIT(OPT_ALL), 0, 1},
    {"help", WISPCTL_HELP, 0, 0, 0},
};

int wispctl_parse_args(int argc, char **argv, struct wispctl_args *args,
		       const char *(*getenv_fn)(const char *), char *err, size_t err_size)
{
	unsigned long long given = 0;
	const char *value, *positional[4];
	int npositional = 0, opt, index = -1;
	unsigned number;

	memset(args, 0, sizeof(*args));
	value = getenv_fn("WISPCTL_STATE_DIR");
	if (copy_string(args->state_dir, sizeof(args->state_dir),
			value && *value ? value : WISPCTL_DEFAULT_STATE_DIR) < 0)
		goto too_long_env;
	value = getenv_fn("WISP_BIN");
	if (value && *value && copy_string(args->wisp, sizeof(args->wisp), value) < 0)
		goto too_long_env;
	args->timeout_s = WISPCTL_DEFAULT_TIMEOUT_S;
	args->mem_mib = WISPCTL_DEFAULT_MEM_MIB;
	args->vcpus = 1;
	args->balloon_mib = -1;
	args->parallel = 1;
	args->min_avail_mib = WISPCTL_DEFAULT_MIN_AVAIL;
	args->warm_marker = WISPCTL_WARM_MARKER;
	memcpy(args->tap_pattern, WISPCTL_DEFAULT_TAP_PATTERN, sizeof(WISPCTL_DEFAULT_TAP_PATTERN));

	optind = 0; /* a full reset of getopt, so that tests may call this again and again */
	opterr = 0;
	for (;;) {
		opt = getopt_long(argc, argv, "-o:h", long_options, NULL);
		if (opt == -1)
			break;
		if (opt == 1) { /* a positional argument, in its place ("-" in optstring) */
			if (npositional == (int)(sizeof(positional) / sizeof(positional[0]))) {
				snprintf(err, err_size, "too many arguments ('%s')", optarg);
				return -EINVAL;
			}
			positional[npositional++] = optarg;
			continue;
		}
		if (opt == 'o')
			opt = OPT_OUT;
		if (opt == 'h')
			opt = OPT_HELP;
		if (opt == '?' || opt == ':') {
			snprintf(err, err_size, "unknown option or missing value: '%s'",
				 argv[optind - 1]);
			return -EINVAL;
		}
		given |= BIT(opt);
		switch (opt) {
		case OPT_STATE_DIR:
			if (!*optarg ||
			    copy_string(args->state_dir, sizeof(args->state_dir), optarg) < 0)
				goto bad_value;
			break;
		case OPT_WISP:
			if (!*optarg || copy_string(args->wisp, sizeof(args->wisp), optarg) < 0)
				goto bad_value;
			break;
		case OPT_TIMEOUT:
			if (parse_uint(optarg, 1, 86400, &args->timeout_s) < 0)
				goto bad_value;
			break;
		case OPT_KERNEL:
			args->kernel = optarg;
			break;
		case OPT_INITRD:
			args->initrd = optarg;
			break;
		case OPT_ROOTFS:
			args->rootfs = optarg;
			break;
		case OPT_MEM:
			if (parse_uint(optarg, 16, 1 << 20, &args->mem_mib) < 0)
				goto bad_value;
			break;
		case OPT_VCPUS:
			if (parse_uint(optarg, 1, 32, &args->vcpus) < 0)
				goto bad_value;
			break;
		case OPT_CMDLINE:
			args->cmdline = optarg;
			break;
		case OPT_WARM:
			if (!*optarg)
				goto bad_value;
			args->warm_marker = optarg;
			break;
		case OPT_NET:
			args->net = true;
			break;
		case OPT_BALLOON:
			if (parse_uint(optarg, 0, 1 << 20, &number) < 0)
				goto bad_value;
			args->balloon_mib = (int)number;
			break;
		case OPT_OUT:
			if (!*optarg)
				goto bad_value;
			args->out_dir = optarg;
			break;
		case OPT_COUNT:
			if (parse_uint(optarg, 1, 100000, &args->count) < 0)
				goto bad_value;
			break;
		case OPT_PARALLEL:
			if (parse_uint(optarg, 1, 256, &args->parallel) < 0)
				goto bad_value;
			break;
		case OPT_TAP_PATTERN:
			if (wispctl_check_tap_pattern(optarg, err, err_size) < 0)
				return -EINVAL;
			memcpy(args->tap_pattern, optarg, strlen(optarg) + 1);
			break;
		case OPT_MIN_AVAIL:
			if (parse_uint(optarg, 0, 1 << 30, &args->min_avail_mib) < 0)
				goto bad_value;
			break;
		case OPT_JAIL:
			args->jail = true;
			break;
		case OPT_ALL:
			args->all = true;
			break;
		case OPT_HELP:
			args->command = WISPCTL_HELP;
			return 0;
		}
	}
	if (npositional == 0) {
		snprintf(err, err_size,
			 "no command given (snapshot, clone, invoke, balloon, ls, "
			 "reap; --help)");
		return -EINVAL;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, positional[0]))
			index = (int)i;
	if (index < 0) {
		snprintf(err, err_size,
			 "unknown command '%s' (snapshot, clone, invoke, balloon, ls, "
			 "reap; --help)",
			 positional[0]);
		return -EINVAL;
	}
	args->command = commands[index].command;
	if (args->command == WISPCTL_HELP)
		return 0;
	for (int o = OPT_STATE_DIR; o < OPT_END; o++) {
		if ((given & BIT(o)) && !((GLOBAL_OPTS | commands[index].options) & BIT(o))) {
			snprintf(err, err_size, "--%s does not apply to %s", option_name(o),
				 commands[index].name);
			return -EINVAL;
		}
	}
	npositional--;
	if (npositional < commands[index].min_positional ||
	    npositional > commands[index].max_positional)
		goto arguments;

	switch (args->command) {
	case WISPCTL_SNAPSHOT:
		if (!args->kernel) {
			snprintf(err, err_size, "snapshot needs --kernel PATH");
			return -EINVAL;
		}
		if (!args->out_dir) {
			snprintf(err, err_size, "snapshot needs -o DIR (where the snapshot goes)");
			return -EINVAL;
		}
		break;
	case WISPCTL_CLONE:
		args->snapshot_dir = positional[1];
		if (!args->count) {
			snprintf(err, err_size, "clone needs --count N (1 to 100000)");
			return -EINVAL;
		}
		break;
	case WISPCTL_INVOKE:
	case WISPCTL_BALLOON:
		/* ID VALUE, or --all VALUE */
		if (npositional != (args->all ? 1 : 2))
			goto arguments;
		if (!args->all)
			args->id = positional[1];
		value = positional[npositional];
		if (args->command == WISPCTL_INVOKE) {
			if (wispctl_check_request(value, err, err_size) < 0)
				return -EINVAL;
			args->request = value;
		} else if (parse_uint(value, 0, 1 << 20, &args->amount_mib) < 0) {
			snprintf(err, err_size, "balloon: bad size '%s' (MiB, 0 to %u)", value,
				 1 << 20);
			return -EINVAL;
		}
		break;
	case WISPCTL_REAP:
		if (npositional != (args->all ? 0 : 1))
			goto arguments;
		if (!args->all)
			args->id = positional[1];
		break;
	default:
		break;
	}
	if (args->id && wispctl_parse_clone_id(args->id, &number) < 0) {
		snprintf(err, err_size, "'%s' is not a clone id (c0, c1, ...: wispctl ls)",
			 args->id);
		return -EINVAL;
	}
	return 0;

arguments:
	snprintf(err, err_size, "%s: wrong arguments (see wispctl --help)", commands[index].name);
	return -EINVAL;
bad_value:
	snprintf(err, err_size, "bad value for --%s: '%s'", option_name(opt), optarg);
	return -EINVAL;
too_long_env:
	snprintf(err, err_size, "$WISPCTL_STATE_DIR or $WISP_BIN is too long");
	return -EINVAL;
}

int wispctl_check_tap_pattern(const char *pattern, char *err, size_t err_size)
{
	unsigned conversions = 0;
	char longest[64];

	for (const char *p = pattern; *p; p++) {
		if (*p != '%')
			continue;
		if (p[1] == '%') {
			p++;
		} else if (p[1] == 'd') {
			conversions++;
			p++;
		} else {
			conversions = 99;
		}
	}
	if (conversions != 1) {
		snprintf(err, err_size,
			 "TAP pattern '%s' must hold exactly one %%d and no other "
			 "conversion",
			 pattern);
		return -EINVAL;
	}
	if (wispctl_tap_name(pattern, 999999, longest, sizeof(longest)) < 0 ||
	    strlen(longest) >= WISPCTL_IFNAME_MAX) {
		snprintf(err, err_size, "TAP pattern '%s' gives names longer than %d characters",
			 pattern, WISPCTL_IFNAME_MAX - 1);
		return -EINVAL;
	}
	return 0;
}

int wispctl_tap_name(const char *pattern, unsigned number, char *out, size_t size)
{
	int n;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	n = snprintf(out, size, pattern, number); /* checked by wispctl_check_tap_pattern */
#pragma GCC diagnostic pop
	if (n < 0 || (size_t)n >= size || (size_t)n >= WISPCTL_IFNAME_MAX)
		return -ENAMETOOLONG;
	return 0;
}

void wispctl_clone_id(unsigned number, char *out, size_t size)
{
	snprintf(out, size, "c%u", number);
}

int wispctl_parse_clone_id(const char *id, unsigned *number)
{
	unsigned long value;
	char *end;

	if (id[0] != 'c' || id[1] < '0' || id[1] > '9' || (id[1] == '0' && id[2]))
		return -EINVAL;
	errno = 0;
	value = strtoul(id + 1, &end, 10);
	if (errno || *end || value > 999999)
		return -EINVAL;
	*number = (unsigned)value;
	return 0;
}

int wispctl_clone_path(const char *state_dir, const char *id, enum wispctl_clone_file file,
		       char *out, size_t size)
{
	static const char *const names[] = {
	    [WISPCTL_FILE_DIR] = "",
	    [WISPCTL_FILE_SOCKET] = "/api.sock",
	    [WISPCTL_FILE_CONSOLE_IN] = "/console.in",
	    [WISPCTL_FILE_CONSOLE_LOG] = "/console.log",
	    [WISPCTL_FILE_STDERR] = "/wisp.stderr",
	    [WISPCTL_FILE_INFO] = "/info.json",
	    [WISPCTL_FILE_LOCK] = "/invoke.lock",
	};
	int n = snprintf(out, size, "%s/clones/%s%s", state_dir, id, names[file]);

	if (n < 0 || (size_t)n >= size)
		return -ENAMETOOLONG;
	if (file == WISPCTL_FILE_SOCKET && (size_t)n >= WISPCTL_SUN_PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

int wispctl_jail_base(const char *state_dir, char *out, size_t size)
{
	int n = snprintf(out, size, "%s/jails", state_dir);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int wispctl_jail_root(const char *state_dir, const char *exec_name, const char *id, char *out,
		      size_t size)
{
	int n = snprintf(out, size, "%s/jails/%s/%s/root", state_dir, exec_name, id);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int wispctl_jail_socket(const char *state_dir, const char *exec_name, const char *id, char *out,
			size_t size)
{
	int n = snprintf(out, size, "%s/jails/%s/%s/root/api.sock", state_dir, exec_name, id);

	if (n < 0 || (size_t)n >= size || (size_t)n >= WISPCTL_SUN_PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

void wispctl_jail_parent_cgroup(const char *state_dir, char *out, size_t size)
{
	uint32_t hash = 2166136261u; /* FNV-1a */

	for (const char *c = state_dir; *c; c++)
		hash = (hash ^ (unsigned char)*c) * 16777619u;
	snprintf(out, size, "wispctl-%08x", hash);
}

bool wispctl_has_word(const char *text, const char *word)
{
	size_t len = strlen(word);

	if (!len)
		return false;
	for (const char *p = text; (p = strstr(p, word)); p++) {
		bool starts = p == text || isspace((unsigned char)p[-1]);
		bool ends = p[len] == '\0' || isspace((unsigned char)p[len]);
		if (starts && ends)
			return true;
	}
	return false;
}

int wispctl_check_request(const char *request, char *err, size_t err_size)
{
	size_t len = strlen(request);

	if (len == 0 || len > WISPCTL_REQUEST_MAX) {
		snprintf(err, err_size, "a request is 1 to %d characters (got %zu)",
			 WISPCTL_REQUEST_MAX, len);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)request[i];
		if (c < 0x20 || c > 0x7e) {
			snprintf(err, err_size,
				 "a request is printable ASCII: byte 0x%02x at %zu "
				 "is not",
				 c, i);
			return -EINVAL;
		}
	}
	return 0;
}

int wispctl_parse_http_head(const char *buf, size_t len, int *status, size_t *content_length,
			    size_t *head_len)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4), *line, *next;
	unsigned code;

	if (len >= 5 && memcmp(buf, "HTTP/", 5))
		return -EINVAL;
	if (!end)
		return len > 16384 ? -EINVAL : -EAGAIN;
	if (sscanf(buf, "HTTP/1.%*[01] %3u", &code) != 1 || code < 100 || code > 599)
		return -EINVAL;
	*status = (int)code;
	*content_length = 0;
	*head_len = (size_t)(end - buf) + 4;
	for (line = memchr(buf, '\n', (size_t)(end - buf)); line && line < end; line = next) {
		line++;
		next = memchr(line, '\n', (size_t)(end + 2 - line));
		if ((size_t)(end - line) >= 15 && !strncasecmp(line, "Content-Length:", 15)) {
			char *num_end;
			unsigned long long value;

			errno = 0;
			value = strtoull(line + 15, &num_end, 10);
			if (errno || num_end == line + 15 || value > (1ULL << 30))
				return -EINVAL;
			*content_length = (size_t)value;
		}
	}
	return 0;
}

int wispctl_proc_kb(const char *text, const char *key, uint64_t *kb)
{
	size_t key_len = strlen(key);

	for (const char *line = text; line && *line; line = strchr(line, '\n')) {
		if (*line == '\n')
			line++;
		if (!strncmp(line, key, key_len)) {
			char *end;
			unsigned long long value;

			errno = 0;
			value = strtoull(line + key_len, &end, 10);
			if (errno || end == line + key_len)
				return -EINVAL;
			*kb = value;
			return 0;
		}
	}
	return -ENOENT;
}

int wispctl_find_line(const char *text, size_t len, const char *prefix, char *out, size_t size)
{
	size_t prefix_len = strlen(prefix);
	const char *p = text, *end = text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			return -EAGAIN; /* an incomplete line: wait for the rest */
		if ((size_t)(nl - p) >= prefix_len && !memcmp(p, prefix, prefix_len)) {
			size_t n = (size_t)(nl - p) - prefix_len;
			if (n && p[prefix_len + n - 1] == '\r')
				n--;
			if (n >= size)
				n = size - 1;
			memcpy(out, p + prefix_len, n);
			out[n] = '\0';
			return 0;
		}
		p = nl + 1;
	}
	return -EAGAIN;
}

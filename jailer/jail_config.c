/* wisp-jailer's command line, checks and paths (pure: no system calls). */
#include "jail_config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int jail_check_id(const char *id)
{
	size_t len = strlen(id);

	if (len == 0 || len > JAIL_ID_MAX)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)id[i]) && id[i] != '-')
			return -EINVAL;
	return 0;
}

/* Checks the '/'-separated components of path (after any leading slash). */
static int check_components(const char *path, bool restricted_chars)
{
	const char *p = path;

	if (*p == '/')
		p++;
	for (;;) {
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len == 0)
			return -EINVAL; /* "//", a trailing "/" or nothing */
		if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
			return -EINVAL;
		if (restricted_chars)
			for (size_t i = 0; i < len; i++)
				if (!isalnum((unsigned char)p[i]) && !strchr("_.-", p[i]))
					return -EINVAL;
		if (!end)
			return 0;
		p = end + 1;
	}
}

int jail_check_absolute_path(const char *path)
{
	if (path[0] != '/' || strlen(path) >= JAIL_PATH_MAX)
		return -EINVAL;
	if (!strcmp(path, "/"))
		return 0;
	return check_components(path, false);
}

int jail_check_relative_path(const char *path)
{
	if (path[0] == '/' || path[0] == '\0' || strlen(path) >= JAIL_PATH_MAX)
		return -EINVAL;
	return check_components(path, true);
}

int jail_parse_cgroup(const char *arg, struct jail_cgroup_setting *setting)
{
	static const char *const managed[] = {"cgroup.procs", "cgroup.threads",
					      "cgroup.subtree_control", "cgroup.kill"};
	const char *eq = strchr(arg, '=');
	size_t file_len;
	const char *dot;

	if (!eq)
		return -EINVAL;
	file_len = (size_t)(eq - arg);
	if (file_len == 0 || file_len >= sizeof(setting->file))
		return -EINVAL;
	/* CONTROLLER.NAME: a dot, neither first nor last. */
	dot = memchr(arg, '.', file_len);
	if (!dot || dot == arg || arg[file_len - 1] == '.')
		return -EINVAL;
	/* The controller in lower case, the name as the kernel spells it (hugetlb.2MB.max). */
	for (size_t i = 0; i < file_len; i++)
		if (!islower((unsigned char)arg[i]) && !isdigit((unsigned char)arg[i]) &&
		    arg[i] != '_' && arg[i] != '.' &&
		    !(arg + i > dot && isupper((unsigned char)arg[i])))
			return -EINVAL;
	if (strlen(eq + 1) == 0 || strlen(eq + 1) >= sizeof(setting->value))
		return -EINVAL;
	for (const char *v = eq + 1; *v; v++)
		if (!isprint((unsigned char)*v))
			return -EINVAL;
	memcpy(setting->file, arg, file_len);
	setting->file[file_len] = '\0';
	for (size_t i = 0; i < sizeof(managed) / sizeof(managed[0]); i++)
		if (!strcmp(setting->file, managed[i]))
			return -EINVAL;
	strcpy(setting->value, eq + 1);
	return 0;
}

void jail_cgroup_controller(const char *file, char *controller, size_t size)
{
	const char *dot = strchr(file, '.');
	size_t len = dot ? (size_t)(dot - file) : strlen(file);

	if (size == 0)
		return;
	if (len == strlen("cgroup") && !strncmp(file, "cgroup", len))
		len = 0;
	if (len >= size)
		len = size - 1;
	memcpy(controller, file, len);
	controller[len] = '\0';
}

static int parse_u64(const char *text, uint64_t max, uint64_t *value)
{
	char *end;
	unsigned long long parsed;

	if (!isdigit((unsigned char)text[0]))
		return -EINVAL;
	errno = 0;
	parsed = strtoull(text, &end, 10);
	if (errno || *end || parsed > max)
		return -EINVAL;
	*value = parsed;
	return 0;
}

int jail_parse_rlimit(const char *arg, enum jail_rlimit_kind *kind, uint64_t *value)
{
	const char *eq = strchr(arg, '=');

	if (!eq)
		return -EINVAL;
	if ((size_t)(eq - arg) == strlen("fsize") && !strncmp(arg, "fsize", 5))
		*kind = JAIL_RLIMIT_FSIZE;
	else if ((size_t)(eq - arg) == strlen("no-file") && !strncmp(arg, "no-file", 7))
		*kind = JAIL_RLIMIT_NOFILE;
	else
		return -EINVAL;
	return parse_u64(eq + 1, INT64_MAX, value);
}

int jail_parse_id_number(const char *arg, uint32_t *value)
{
	uint64_t parsed;
	int ret = parse_u64(arg, UINT32_MAX - 1, &parsed);

	if (!ret)
		*value = (uint32_t)parsed;
	return ret;
}

/* The value of option argv[*i] ("--name VALUE" or "--name=VALUE"), or NULL. */
static const char *option_value(int argc, char **argv, int *i, const char *name, bool *matched)
{
	size_t len = strlen(name);
	const char *arg = argv[*i];

	*matched = false;
	if (strncmp(arg, name, len))
		return NULL;
	if (arg[len] == '=') {
		*matched = true;
		return arg + len + 1;
	}
	if (arg[len] != '\0')
		return NULL;
	*matched = true;
	if (*i + 1 >= argc)
		return NULL;
	return argv[++*i];
}

#define FAIL(...)                                                                                  \
	do {                                                                                       \
		snprintf(err, err_size, __VA_ARGS__);                                              \
		return -EINVAL;                                                                    \
	} while (0)

int jail_parse_args(int argc, char **argv, struct jail_config *config, char *err, size_t err_size)
{
	static const char *const valued[] = {
	    "--id",    "--exec-file",	   "--uid",    "--gid",		  "--chroot-base-dir",
	    "--netns", "--cgroup-version", "--cgroup", "--parent-cgroup", "--resource-limit",
	};
	const char *id = NULL;

	memset(config, 0, sizeof(*config));
	config->chroot_base = JAIL_DEFAULT_BASE;
	config->cgroup_version = 2;
	err[0] = '\0';

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *value = NULL;
		const char *name = NULL;
		bool matched = false;

		if (!strcmp(arg, "--")) {
			config->exec_args = argv + i + 1;
			config->exec_arg_count = argc - i - 1;
			break;
		}
		if (!strcmp(arg, "--daemonize")) {
			config->daemonize = true;
			continue;
		}
		if (!strcmp(arg, "--new-pid-ns")) {
			config->new_pid_ns = true;
			continue;
		}
		if (!strcmp(arg, "--cleanup")) {
			config->cleanup = true;
			continue;
		}
		if (!strcmp(arg, "--allow-root")) {
			config->allow_root = true;
			continue;
		}
		for (size_t n = 0; n < sizeof(valued) / sizeof(valued[0]) && !matched; n++) {
			value = option_value(argc, argv, &i, valued[n], &matched);
			name = valued[n];
		}
		if (!matched)
			FAIL("unknown option '%s' (see wisp-jailer --help)", arg);
		if (!value)
			FAIL("%s needs a value", name);

		if (!strcmp(name, "--id")) {
			if (jail_check_id(value))
				FAIL("--id '%s': 1 to %d letters, digits and dashes", value,
				     JAIL_ID_MAX);
			id = value;
		} else if (!strcmp(name, "--exec-file")) {
			if (jail_check_absolute_path(value))
				FAIL("--exec-file '%s': not an absolute path without '.' or '..' "
				     "components",
				     value);
			config->exec_file = value;
		} else if (!strcmp(name, "--uid") || !strcmp(name, "--gid")) {
			uint32_t number;

			if (jail_parse_id_number(value, &number))
				FAIL("%s '%s': not a number from 0 to 4294967294", name, value);
			if (name[2] == 'u') {
				config->uid = number;
				config->have_uid = true;
			} else {
				config->gid = number;
				config->have_gid = true;
			}
		} else if (!strcmp(name, "--chroot-base-dir")) {
			if (jail_check_absolute_path(value) || !strcmp(value, "/"))
				FAIL("--chroot-base-dir '%s': not an absolute path (other than /) "
				     "without '.' or '..' components",
				     value);
			config->chroot_base = value;
		} else if (!strcmp(name, "--netns")) {
			if (jail_check_absolute_path(value) || !strcmp(value, "/"))
				FAIL("--netns '%s': not an absolute path without '.' or '..' "
				     "components (e.g. /var/run/netns/NAME)",
				     value);
			config->netns = value;
		} else if (!strcmp(name, "--cgroup-version")) {
			if (strcmp(value, "2"))
				FAIL("--cgroup-version '%s': only 2 (the unified hierarchy) is "
				     "supported",
				     value);
		} else if (!strcmp(name, "--cgroup")) {
			if (config->cgroup_count == JAIL_CGROUPS_MAX)
				FAIL("--cgroup '%s': at most %d --cgroup options", value,
				     JAIL_CGROUPS_MAX);
			if (jail_parse_cgroup(value, &config->cgroups[config->cgroup_count]))
				FAIL("--cgroup '%s': not FILE=VALUE with FILE as CONTROLLER.NAME "
				     "(e.g. pids.max=64; letters, digits, '_' and '.'; "
				     "not cgroup.procs, cgroup.threads, cgroup.subtree_control or "
				     "cgroup.kill) and VALUE 1 to %d printable characters",
				     value, JAIL_CGROUP_VALUE_MAX - 1);
			config->cgroup_count++;
		} else if (!strcmp(name, "--parent-cgroup")) {
			if (jail_check_relative_path(value))
				FAIL("--parent-cgroup '%s': not a relative path of names made of "
				     "letters, digits, '_', '.' and '-' (no '.' or '..')",
				     value);
			config->parent_cgroup = value;
		} else if (!strcmp(name, "--resource-limit")) {
			enum jail_rlimit_kind kind;
			uint64_t limit;

			if (jail_parse_rlimit(value, &kind, &limit))
				FAIL("--resource-limit '%s': not fsize=N or no-file=N (N a "
				     "decimal number)",
				     value);
			config->rlimit_set[kind] = true;
			config->rlimit[kind] = limit;
		}
	}

	if (!id)
		FAIL("--id is required");
	strcpy(config->id, id);
	if (!config->exec_file)
		FAIL("--exec-file is required");
	{
		const char *slash = strrchr(config->exec_file, '/');
		const char *base = slash + 1;

		if (strlen(base) >= sizeof(config->exec_name))
			FAIL("--exec-file '%s': the file name is too long", config->exec_file);
		strcpy(config->exec_name, base);
	}
	if (!config->parent_cgroup)
		config->parent_cgroup = config->exec_name;
	if (config->cleanup) {
		if (config->have_uid || config->have_gid || config->netns || config->cgroup_count ||
		    config->daemonize || config->new_pid_ns || config->exec_arg_count ||
		    config->rlimit_set[JAIL_RLIMIT_FSIZE] || config->rlimit_set[JAIL_RLIMIT_NOFILE])
			FAIL("--cleanup takes only --id, --exec-file, --chroot-base-dir and "
			     "--parent-cgroup");
		return 0;
	}
	if (!config->have_uid)
		FAIL("--uid is required");
	if (!config->have_gid)
		FAIL("--gid is required");
	if ((config->uid == 0 || config->gid == 0) && !config->allow_root)
		FAIL("--uid %u --gid %u: the jailed process would run as root; give an "
		     "unprivileged uid and gid (or --allow-root to insist)",
		     (unsigned)config->uid, (unsigned)config->gid);
	{
		char path[JAIL_PATH_MAX];

		if (jail_root_path(config, path, sizeof(path)))
			FAIL("--chroot-base-dir '%s': the jail's path would be too long",
			     config->chroot_base);
	}
	return 0;
}

int jail_dir_path(const struct jail_config *config, char *out, size_t size)
{
	int len =
	    snprintf(out, size, "%s/%s/%s", config->chroot_base, config->exec_name, config->id);

	return len < 0 || (size_t)len >= size ? -ENAMETOOLONG : 0;
}

int jail_root_path(const struct jail_config *config, char *out, size_t size)
{
	int len = snprintf(out, size, "%s/%s/%s/root", config->chroot_base, config->exec_name,
			   config->id);

	return len < 0 || (size_t)len >= size ? -ENAMETOOLONG : 0;
}

int jail_cgroup_path(const struct jail_config *config, const char *cgroup_mount, char *out,
		     size_t size)
{
	int len = snprintf(out, size, "%s/%s/%s", cgroup_mount, config->parent_cgroup, config->id);

	return len < 0 || (size_t)len >= size ? -ENAMETOOLONG : 0;
}

bool jail_word_in_list(const char *list, const char *word)
{
	size_t len = strlen(word);

	if (len == 0)
		return false;
	for (const char *p = list; *p;) {
		while (*p && isspace((unsigned char)*p))
			p++;
		const char *start = p;

		while (*p && !isspace((unsigned char)*p))
			p++;
		if ((size_t)(p - start) == len && !strncmp(start, word, len))
			return true;
	}
	return false;
}

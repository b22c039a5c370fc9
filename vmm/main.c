/* wisp: a minimal KVM micro-VMM. main() parses, builds the VM and is the only exit. */
#include "cli.h"
#include "controller.h"
#include "log.h"
#include "memory_file.h"
#include "metrics.h"
#include "seccomp_filter.h"
#include "snapshot_info.h"
#include "vm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef WISP_VERSION
#define WISP_VERSION "0.1.0"
#endif

static struct termios saved_termios;
static int termios_saved;

static void restore_terminal(void)
{
	if (termios_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
}

/* Keystrokes go to the guest as they are typed; Ctrl-C still ends wisp. */
static void terminal_to_raw(void)
{
	struct termios raw;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_termios) < 0)
		return;
	termios_saved = 1;
	atexit(restore_terminal);
	raw = saved_termios;
	raw.c_lflag &= ~(ICANON | ECHO);
	raw.c_iflag &= ~(ICRNL);
	tcsetattr(STDIN_FILENO, TCSANOW, &raw);
}

static int check_host_memory(uint64_t mem_mib)
{
	long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
	uint64_t host_mib;

	if (pages <= 0 || page_size <= 0)
		return 0;
	host_mib = ((uint64_t)pages * (uint64_t)page_size) >> 20;
	if (mem_mib > host_mib) {
		log_error("--mem-mib %llu: more than this host's %llu MiB of RAM",
			  (unsigned long long)mem_mib, (unsigned long long)host_mib);
		return -ENOMEM;
	}
	return 0;
}

/* The filters each thread will install: wisp's own, a --seccomp-filter file's, or none.
 * Returns 0 or the exit status. */
static int prepare_seccomp(const struct process_config *process)
{
	struct seccomp_programs programs;
	char err[512];

	/* jansson seeds its hash function from /dev/urandom on the first JSON object, in
	 * whichever thread makes it: seeded here, before any filter forbids the open. */
	json_object_seed(0);
	if (process->no_seccomp)
		return seccomp_prepare(NULL, NULL) ? EXIT_VMM_FAILURE : 0;
	if (*process->seccomp_filter) {
		if (seccomp_file_load(process->seccomp_filter, &programs, err, sizeof(err))) {
			log_error("%s", err);
			return EXIT_BAD_INPUT;
		}
	} else if (seccomp_file_parse(seccomp_embedded_filter, seccomp_embedded_filter_len,
				      &programs, err, sizeof(err))) {
		log_error("the built-in seccomp filters do not parse (a build problem): %s", err);
		return EXIT_VMM_FAILURE;
	}
	if (seccomp_prepare(&programs, seccomp_embedded_syscall_names)) {
		seccomp_programs_free(&programs);
		return EXIT_VMM_FAILURE;
	}
	return 0;
}

int main(int argc, char *argv[])
{
	static struct controller ctl;
	struct vmm_config *config = calloc(1, sizeof(*config));
	enum failure_origin origin = FAILURE_VMM;
	char err_text[1024];
	sigset_t signals;
	int err;

	struct timespec start;

	if (argc >= 2 && !strcmp(argv[1], "snapshot-info")) {
		free(config);
		return snapshot_info_main(argc - 1, argv + 1);
	}
	if (argc >= 2 && !strcmp(argv[1], "snapshot-rebase")) {
		free(config);
		return memory_file_rebase_main(argc - 1, argv + 1);
	}
	if (argc >= 2 && !strcmp(argv[1], "seccomp-filter-dump")) {
		free(config);
		return seccomp_dump_main(argc - 1, argv + 1);
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	if (!config)
		return EXIT_VMM_FAILURE;
	err = cli_parse(argc, argv, config, err_text, sizeof(err_text));
	if (err == CLI_HELP) {
		fputs(cli_usage, stdout);
		return EXIT_GUEST_DONE;
	}
	if (err == CLI_API_SCHEMA) {
		json_t *schema = fc_api_schema();
		if (!schema || json_dumpf(schema, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER))
			return EXIT_VMM_FAILURE;
		json_decref(schema);
		putchar('\n');
		return EXIT_GUEST_DONE;
	}
	if (err == CLI_VERSION) {
		printf("wisp %s\n", WISP_VERSION);
		return EXIT_GUEST_DONE;
	}
	if (err < 0) {
		fprintf(stderr, "wisp: %s\n", err_text);
		return EXIT_BAD_INPUT;
	}
	if (*config->process.config_file &&
	    controller_load_config_file(config->process.config_file, config, err_text,
					sizeof(err_text), &origin)) {
		fprintf(stderr, "wisp: %s\n", err_text);
		return controller_exit_status(origin);
	}
	config->process.start_ns = (uint64_t)start.tv_sec * 1000000000ull + (uint64_t)start.tv_nsec;
	log_set_level(config->log_level);
	if (check_host_memory(config->mem_mib))
		return EXIT_BAD_INPUT;

	/* Each thread installs its filter itself (seccomp_enter); they are built here, before
	 * any thread starts. */
	err = prepare_seccomp(&config->process);
	if (err)
		return err;

	/* Signals are taken by the event loop (signalfd): block them in every thread. */
	vm_ending_signals(&signals);
	pthread_sigmask(SIG_BLOCK, &signals, NULL);
	err = metrics_count_sigpipe();
	if (err) {
		log_error("cannot install the SIGPIPE handler: %s", strerror(-err));
		return EXIT_VMM_FAILURE;
	}

	if (controller_init(&ctl, config, WISP_VERSION, &origin))
		return controller_exit_status(origin);
	free(config);
	terminal_to_raw();
	return controller_run(&ctl);
}

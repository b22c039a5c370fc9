/* wisp: a minimal KVM micro-VMM. main() parses, builds the VM and is the only exit. */
#include "cli.h"
#include "log.h"
#include "vm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#ifndef WISP_VERSION
#define WISP_VERSION "0.1.0"
#endif

enum { EXIT_GUEST_DONE = 0, EXIT_VMM_FAILURE = 1, EXIT_BAD_INPUT = 2 };

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

int main(int argc, char *argv[])
{
	struct vmm_config config;
	struct guest_files files;
	struct vm vm;
	char err_text[256];
	sigset_t signals;
	bool bad_input;
	int err;

	err = cli_parse(argc, argv, &config, err_text, sizeof(err_text));
	if (err == CLI_HELP) {
		fputs(cli_usage, stdout);
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
	log_set_level(config.log_level);
	if (check_host_memory(config.mem_mib))
		return EXIT_BAD_INPUT;
	if (guest_files_open(&files, &config))
		return EXIT_BAD_INPUT;

	/* Signals are taken by the event loop (signalfd): block them in every thread. */
	sigemptyset(&signals);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	err = vm_create(&vm, &config, &files, &bad_input);
	guest_files_close(&files);
	if (err)
		return bad_input ? EXIT_BAD_INPUT : EXIT_VMM_FAILURE;
	terminal_to_raw();
	if (vm_start(&vm))
		return EXIT_VMM_FAILURE;
	return vm_run(&vm);
}

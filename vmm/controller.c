#include "controller.h"

#include "log.h"
#include "metrics.h"
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define CONFIG_FILE_MAX (1 << 20)

int controller_load_config_file(const char *path, struct vmm_config *config, char *err,
				size_t err_size, enum failure_origin *origin)
{
	FILE *file = fopen(path, "re");
	char *text = NULL;
	size_t len;
	int ret;

	if (!file) {
		ret = -errno;
		snprintf(err, err_size, "--config-file %s: cannot open: %s", path, strerror(-ret));
		failure_blame(origin, FAILURE_BAD_INPUT);
		return ret;
	}
	text = malloc(CONFIG_FILE_MAX + 1);
	if (!text) {
		ret = -ENOMEM;
		snprintf(err, err_size, "--config-file %s: out of memory for a 1 MiB buffer", path);
		goto out;
	}
	failure_blame(origin, FAILURE_BAD_INPUT); /* from here on, only the file can fail */
	len = fread(text, 1, CONFIG_FILE_MAX + 1, file);
	if (ferror(file) || len > CONFIG_FILE_MAX) {
		ret = -EINVAL;
		snprintf(err, err_size, "--config-file %s: %s", path,
			 ferror(file) ? "cannot read it" : "larger than 1 MiB");
		goto out;
	}
	{
		char why[512];
		ret = fc_config_file_parse(text, len, config, why, sizeof(why));
		if (ret)
			snprintf(err, err_size, "--config-file %s: %s", path, why);
	}
out:
	free(text);
	fclose(file);
	return ret;
}

/* The failure's cause as logged where it happened, or else its errno. */
static void describe_failure(char *err, size_t err_size, const char *what, int ret)
{
	const char *cause = log_first_error();

	snprintf(err, err_size, "%s: %s", what, *cause ? cause : strerror(-ret));
}

/* Builds and starts the VM from config. On failure err says why (the first error logged on
 * the way, which names what failed) and ctl->boot_failure where it came from. */
static int controller_boot(struct controller *ctl, const struct vmm_config *config, char *err,
			   size_t err_size)
{
	struct guest_files files;
	int ret;

	ctl->boot_failure = FAILURE_VMM;
	log_first_error_reset();
	ret = guest_files_open(&files, config, &ctl->boot_failure);
	if (ret) {
		describe_failure(err, err_size, "cannot load the guest", ret);
		return ret;
	}
	ret = vm_create(&ctl->vm, config, &files, &ctl->boot_failure);
	guest_files_close(&files);
	if (ret) {
		describe_failure(err, err_size, "cannot create the VM", ret);
		return ret;
	}
	ctl->vm_created = true;
	ret = vm_start(&ctl->vm);
	if (ret)
		describe_failure(err, err_size, "cannot start the vCPUs", ret);
	return ret;
}

static int op_start(void *opaque, const struct vmm_config *config, char *err, size_t err_size)
{
	struct controller *ctl = opaque;

	if (ctl->vm_created) {
		/* A VM that failed half-way cannot be torn down and built again. */
		snprintf(err, err_size,
			 "an earlier InstanceStart failed after creating the VM; "
			 "start a new wisp");
		return -EINVAL;
	}
	return controller_boot(ctl, config, err, err_size);
}

/* Firecracker's latencies_us.vmm_pause_vm and vmm_resume_vm: the VMM action alone. */
static int op_pause(void *opaque, char *err, size_t err_size)
{
	struct controller *ctl = opaque;
	uint64_t start_us = metrics_monotonic_us();
	int ret = vcpus_pause(&ctl->vm);

	if (ret) {
		snprintf(err, err_size, "cannot pause: the VM is ending");
		return ret;
	}
	log_info("'pause vm' VMM action took %llu us",
		 (unsigned long long)metrics_store_elapsed_us(&metrics.latencies_us.vmm_pause_vm,
							      start_us));
	return 0;
}

static int op_resume(void *opaque, char *err, size_t err_size)
{
	struct controller *ctl = opaque;
	uint64_t start_us = metrics_monotonic_us();
	(void)err;
	(void)err_size;
	vcpus_resume(&ctl->vm);
	log_info("'resume vm' VMM action took %llu us",
		 (unsigned long long)metrics_store_elapsed_us(&metrics.latencies_us.vmm_resume_vm,
							      start_us));
	return 0;
}

static int op_send_ctrl_alt_del(void *opaque, char *err, size_t err_size)
{
	struct controller *ctl = opaque;
	int ret;

	ret = i8042_send_ctrl_alt_del(&ctl->vm.i8042);
	if (ret)
		snprintf(err, err_size, "the keyboard controller's buffer is full: try again");
	return ret;
}

static int op_flush_metrics(void *opaque, char *err, size_t err_size)
{
	struct controller *ctl = opaque;
	int ret;

	if (ctl->metrics_timer_fd < 0) {
		snprintf(err, err_size, "Cannot flush metrics: PUT /metrics first.");
		return -EINVAL;
	}
	ret = metrics_flush(metrics_utc_now_ms());
	if (ret && ret != -EAGAIN) {
		snprintf(err, err_size, "Cannot flush metrics: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

static void on_metrics_timer(void *opaque, uint32_t events)
{
	struct controller *ctl = opaque;
	uint64_t expirations;
	int ret;
	(void)events;

	if (read(ctl->metrics_timer_fd, &expirations, sizeof(expirations)) < 0)
		return;
	ret = metrics_flush(metrics_utc_now_ms());
	if (ret && ret != -EAGAIN)
		log_warn("metrics: the periodic flush failed: %s", strerror(-ret));
}

/* The periodic flush joins whichever loop runs now (before or after InstanceStart). */
static int watch_metrics_timer(struct controller *ctl)
{
	if (ctl->metrics_timer_fd < 0 || !ctl->loop)
		return 0;
	return event_loop_add(ctl->loop, ctl->metrics_timer_fd, EPOLLIN, on_metrics_timer, ctl);
}

/* A path that cannot be opened blames the input in *origin; the timer, the host. */
static int set_metrics(struct controller *ctl, const char *path, char *err, size_t err_size,
		       enum failure_origin *origin)
{
	struct itimerspec period = {.it_interval = {METRICS_FLUSH_PERIOD_MS / 1000, 0},
				    .it_value = {METRICS_FLUSH_PERIOD_MS / 1000, 0}};
	int timer_fd, ret = metrics_set_output(path, err, err_size);

	if (ret) {
		if (ret != -EBUSY)
			failure_blame(origin, FAILURE_BAD_INPUT);
		return ret;
	}
	timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (timer_fd < 0 || timerfd_settime(timer_fd, 0, &period, NULL) < 0) {
		ret = -errno;
		snprintf(err, err_size, "cannot set up the metrics timer: %s", strerror(-ret));
		goto fail;
	}
	ctl->metrics_timer_fd = timer_fd;
	ret = watch_metrics_timer(ctl);
	if (ret) {
		snprintf(err, err_size, "cannot watch the metrics timer: %s", strerror(-ret));
		ctl->metrics_timer_fd = -1;
		goto fail;
	}
	/* As Firecracker does: a first line at once. */
	ret = metrics_flush(metrics_utc_now_ms());
	return ret == -EAGAIN ? 0 : ret;
fail:
	if (timer_fd >= 0)
		close(timer_fd);
	return ret;
}

static int op_set_metrics(void *opaque, const char *path, char *err, size_t err_size)
{
	return set_metrics(opaque, path, err, err_size, NULL);
}

static int op_set_logger(void *opaque, const struct logger_config *logger, char *err,
			 size_t err_size)
{
	(void)opaque;
	if (logger->has_level)
		log_set_level(logger->level);
	return log_configure(*logger->path ? logger->path : NULL, logger->show_level,
			     logger->show_log_origin, err, err_size);
}

static int op_patch_drive(void *opaque, const char *id, const char *path,
			  const struct rate_limiter_config *limiter, char *err, size_t err_size)
{
	struct controller *ctl = opaque;
	struct vm *vm = &ctl->vm;

	for (unsigned int i = 0; i < vm->nr_drives; i++) {
		int ret;

		if (strcmp(vm->drive_ids[i], id))
			continue;
		if (path) {
			ret = blk_update_path(vm->drives[i], path);
			if (ret) {
				snprintf(err, err_size, "drive '%s': cannot switch to %s: %s", id,
					 path, strerror(-ret));
				return ret;
			}
		}
		ret = blk_update_rate_limiter(vm->drives[i], limiter);
		if (ret)
			snprintf(err, err_size, "drive '%s': cannot update its rate limiter: %s",
				 id, strerror(-ret));
		return ret;
	}
	snprintf(err, err_size, "drive '%s' does not exist", id);
	return -ENOENT;
}

static int op_patch_net(void *opaque, const char *id, const struct rate_limiter_config *rx,
			const struct rate_limiter_config *tx, char *err, size_t err_size)
{
	struct controller *ctl = opaque;
	struct vm *vm = &ctl->vm;

	for (unsigned int i = 0; i < vm->nr_nets; i++) {
		int ret;

		if (strcmp(vm->net_ids[i], id))
			continue;
		ret = net_update_rate_limiters(vm->nets[i], rx, tx);
		if (ret)
			snprintf(err, err_size,
				 "network interface '%s': cannot update its rate limiters: %s", id,
				 strerror(-ret));
		return ret;
	}
	snprintf(err, err_size, "network interface '%s' does not exist", id);
	return -ENOENT;
}

static int op_open_check(void *opaque, const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	(void)opaque;

	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

static int op_snapshot_create(void *opaque, const struct snapshot_create_config *request, char *err,
			      size_t err_size)
{
	struct controller *ctl = opaque;
	uint64_t start_us = metrics_monotonic_us();
	int ret = snapshot_create(&ctl->vm, &ctl->api.config, ctl->version, request, err, err_size);

	if (!ret)
		metrics_store_elapsed_us(request->type == SNAPSHOT_DIFF
					     ? &metrics.latencies_us.vmm_diff_create_snapshot
					     : &metrics.latencies_us.vmm_full_create_snapshot,
					 start_us);
	return ret;
}

/* A load that failed before the VM was built leaves the process as fresh as it was; one
 * that failed later cannot be undone (KVM's VM, threads): the API refuses further loads. */
static int controller_restore(struct controller *ctl, const struct snapshot_load_config *request,
			      struct vmm_config *restored, char *err, size_t err_size)
{
	uint64_t start_us = metrics_monotonic_us();
	bool built = false;
	int ret;

	if (ctl->vm_created) {
		snprintf(err, err_size,
			 "an earlier snapshot load or InstanceStart failed after "
			 "creating the VM; start a new wisp");
		return -EINVAL;
	}
	ctl->boot_failure = FAILURE_VMM;
	ret = snapshot_load(&ctl->vm, request, restored, &built, &ctl->boot_failure, err, err_size);
	ctl->vm_created = built;
	if (ret && built)
		return -ENOTRECOVERABLE; /* the API spends the process (api.h) */
	if (!ret)
		log_info("'load snapshot' VMM action took %llu us",
			 (unsigned long long)metrics_store_elapsed_us(
			     &metrics.latencies_us.vmm_load_snapshot, start_us));
	return ret;
}

static int op_snapshot_load(void *opaque, const struct snapshot_load_config *request,
			    struct vmm_config *restored, char *err, size_t err_size)
{
	struct controller *ctl = opaque;

	*restored = ctl->api.config;
	return controller_restore(ctl, request, restored, err, err_size);
}

static const struct api_vmm_ops controller_ops = {
    .start = op_start,
    .pause = op_pause,
    .resume = op_resume,
    .send_ctrl_alt_del = op_send_ctrl_alt_del,
    .flush_metrics = op_flush_metrics,
    .patch_drive = op_patch_drive,
    .patch_net = op_patch_net,
    .set_logger = op_set_logger,
    .set_metrics = op_set_metrics,
    .open_check = op_open_check,
    .snapshot_create = op_snapshot_create,
    .snapshot_load = op_snapshot_load,
};

/* Firecracker's api_server metrics: from wisp's start to the API socket's being ready. */
static void record_startup_time(uint64_t start_ns)
{
	metrics_store(&metrics.api_server.process_startup_time_us,
		      metrics_monotonic_us() - start_ns / 1000);
	metrics_store(&metrics.api_server.process_startup_time_cpu_us, metrics_process_cpu_us());
}

int controller_init(struct controller *ctl, const struct vmm_config *config, const char *version,
		    enum failure_origin *origin)
{
	int ret;

	memset(ctl, 0, sizeof(*ctl));
	ctl->version = version;
	ctl->metrics_timer_fd = -1;
	log_set_instance_id(config->process.id);
	/* GET / and the log read the id from the API's own copy: main frees config. */
	api_state_init(&ctl->api, config, version, &controller_ops, ctl);
	/* Logger and metrics from --config-file, as the API would have set them. */
	if (*config->logger.path || config->logger.has_level) {
		char err[512];
		ret = op_set_logger(ctl, &config->logger, err, sizeof(err));
		if (ret) {
			log_error("--config-file logger: %s", err);
			failure_blame(origin, FAILURE_BAD_INPUT);
			return ret;
		}
	}
	if (*config->metrics_path) {
		char err[512];
		ret = set_metrics(ctl, config->metrics_path, err, sizeof(err), origin);
		if (ret) {
			log_error("--config-file metrics: %s", err);
			return ret;
		}
	}
	if (*config->process.api_sock) {
		ret = api_server_start(&ctl->server, config->process.api_sock,
				       config->process.max_payload, origin);
		if (ret)
			return ret;
		record_startup_time(config->process.start_ns);
	}
	return 0;
}

static void on_api_request(void *opaque, uint32_t events)
{
	struct controller *ctl = opaque;
	(void)events;
	api_server_serve(ctl->server, &ctl->api);
}

static void on_signal_before_start(void *opaque, uint32_t events)
{
	int *signal_fd_and_number = opaque; /* [0]: the fd, [1]: the signal taken */
	struct signalfd_siginfo info;
	(void)events;
	if (read(signal_fd_and_number[0], &info, sizeof(info)) == sizeof(info))
		signal_fd_and_number[1] = (int)info.ssi_signo;
}

/* Before InstanceStart: only API requests and signals. Returns 0 once the VM runs, or
 * the exit status when wisp must end first. */
static int controller_wait_for_start(struct controller *ctl)
{
	int signal_state[2] = {-1, 0};
	struct event_loop loop;
	sigset_t signals;
	int ret = 0, err;

	vm_ending_signals(&signals);
	signal_state[0] = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
	if (signal_state[0] < 0) {
		log_error("cannot create the signalfd for SIGINT, SIGTERM and SIGHUP: %s",
			  strerror(errno));
		return EXIT_VMM_FAILURE;
	}
	err = event_loop_init(&loop);
	if (err) {
		close(signal_state[0]);
		return EXIT_VMM_FAILURE;
	}
	ctl->loop = &loop;
	err = event_loop_add(&loop, signal_state[0], EPOLLIN, on_signal_before_start, signal_state);
	if (!err)
		err = event_loop_add(&loop, api_server_request_fd(ctl->server), EPOLLIN,
				     on_api_request, ctl);
	if (!err)
		err = watch_metrics_timer(ctl);
	if (err) {
		log_error("cannot watch the signals, the API's requests and the metrics timer "
			  "before InstanceStart: %s",
			  strerror(-err));
		ret = EXIT_VMM_FAILURE;
	}
	while (!ret && ctl->api.vm_state == API_VM_NOT_STARTED && !signal_state[1]) {
		if (event_loop_run_once(&loop, -1) < 0) {
			ret = EXIT_VMM_FAILURE;
			break;
		}
	}
	if (signal_state[1]) {
		log_info("signal %d before InstanceStart: ending", signal_state[1]);
		if (signal_state[1] == SIGHUP)
			metrics_store(&metrics.signals.sighup, 1);
		ret = 128 + signal_state[1];
	}
	ctl->loop = NULL;
	event_loop_close(&loop);
	close(signal_state[0]);
	return ret;
}

int controller_run(struct controller *ctl)
{
	int ret, err;

	/* --restore: the snapshot's VM, API or not. */
	if (ctl->api.config.has_restore) {
		char why[1024];
		struct snapshot_load_config request = ctl->api.config.restore;
		if (controller_restore(ctl, &request, &ctl->api.config, why, sizeof(why))) {
			log_error("--restore %s: %s", request.snapshot_path, why);
			ret = controller_exit_status(ctl->boot_failure);
			goto out;
		}
		ctl->api.config.has_restore = false;
		ctl->api.vm_state = request.resume_vm ? API_VM_RUNNING : API_VM_PAUSED;
	} else if (*ctl->api.config.kernel_path) {
		/* A kernel from the command line or --config-file: boot now, API or not. */
		char why[1024];
		if (controller_boot(ctl, &ctl->api.config, why, sizeof(why))) {
			/* The cause was logged where it happened; say it once more only if not. */
			if (!*log_first_error())
				log_error("%s", why);
			ret = controller_exit_status(ctl->boot_failure);
			goto out;
		}
		ctl->api.vm_state = API_VM_RUNNING;
	}
	if (ctl->api.vm_state == API_VM_NOT_STARTED) {
		ret = controller_wait_for_start(ctl);
		if (ret)
			goto out;
	}
	if (ctl->server) {
		err = event_loop_add(&ctl->vm.loop, api_server_request_fd(ctl->server), EPOLLIN,
				     on_api_request, ctl);
		if (err) {
			log_error("cannot watch the API's requests: %s", strerror(-err));
			ret = EXIT_VMM_FAILURE;
			goto out;
		}
	}
	ctl->loop = &ctl->vm.loop;
	err = watch_metrics_timer(ctl);
	if (err) {
		log_error("cannot watch the metrics timer: %s", strerror(-err));
		ret = EXIT_VMM_FAILURE;
		goto out;
	}
	ret = vm_run(&ctl->vm);
	/* Whatever ended the VM (a reboot, SIGTERM), nothing writes an image once wisp has
	 * exited: the requests still in flight finish first. The guest has seen none of them
	 * complete, so none of its completed writes depends on this; a supervisor that copies
	 * the image after wisp's exit does. */
	for (unsigned int i = 0; i < ctl->vm.nr_drives; i++)
		blk_drain(ctl->vm.drives[i]);
out:
	/* Firecracker writes the metrics a last time on the way out. */
	if (ctl->metrics_timer_fd >= 0)
		metrics_flush(metrics_utc_now_ms());
	api_server_remove_socket(ctl->server);
	return ret;
}

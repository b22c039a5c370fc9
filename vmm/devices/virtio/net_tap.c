#include "net.h"

#include "../../log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void log_tap_error(const char *id, const char *tap, int error)
{
	bool exists = if_nametoindex(tap) != 0;

	if (error == EPERM && !exists)
		log_error("net '%s': TAP %s does not exist and creating it needs CAP_NET_ADMIN: "
			  "create it first (ip tuntap add dev %s mode tap user $(id -u); ip "
			  "link set %s up)",
			  id, tap, tap, tap);
	else if (error == EPERM)
		log_error("net '%s': not allowed to use TAP %s: it belongs to another user or "
			  "group (recreate it with ip tuntap add dev %s mode tap user $(id -u))",
			  id, tap, tap);
	else if (error == EBUSY)
		log_error("net '%s': TAP %s is already in use (by another VMM, or another "
			  "--net of this one)",
			  id, tap);
	else if (error == EINVAL && exists)
		log_error("net '%s': %s is not a single-queue TAP interface (a TUN, multi-queue, "
			  "or not a tun/tap device at all)",
			  id, tap);
	else
		log_error("net '%s': cannot attach to TAP %s: %s", id, tap, strerror(error));
}

int net_create(struct net_device **out, const struct net_config *config, const struct gmem *mem,
	       enum failure_origin *origin)
{
	/* Old kernels refuse UFO, very old ones every offload: the best the TAP takes. */
	static const unsigned int tries[] = {TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UFO,
					     TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, 0};
	const char *id = config->id;
	struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
	int hdr_len = VIRTIO_NET_HDR_LEN, fd, err;
	unsigned int offloads = 0;

	if (!*config->tap || strlen(config->tap) >= IFNAMSIZ) {
		log_error("net '%s': TAP name '%s' must have 1 to %d characters", id, config->tap,
			  IFNAMSIZ - 1);
		failure_blame(origin, FAILURE_BAD_INPUT);
		return -EINVAL;
	}
	memcpy(ifr.ifr_name, config->tap, strlen(config->tap) + 1);
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		log_error("net '%s': cannot open /dev/net/tun: %s (%s)", id, strerror(errno),
			  errno == ENOENT ? "load the tun module: modprobe tun"
					  : "wisp needs read-write access to it");
		return err;
	}
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		err = -errno;
		log_tap_error(id, config->tap, -err);
		failure_blame(origin, FAILURE_BAD_INPUT); /* no such TAP, not the user's, busy */
		goto fail;
	}
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0) {
		err = -errno;
		log_error("net '%s': TAP %s refuses a %d-byte vnet header: %s", id, config->tap,
			  hdr_len, strerror(errno));
		goto fail;
	}
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)tries[i]) == 0) {
			offloads = tries[i];
			break;
		}
	}
	/* Off until the driver says what it takes: frames queued until then suit any. */
	if (offloads && ioctl(fd, TUNSETOFFLOAD, 0UL) < 0) {
		err = -errno;
		log_error("net '%s': cannot turn TAP %s's offloads off: %s", id, config->tap,
			  strerror(errno));
		goto fail;
	}
	err = net_create_on_fd(out, fd, config, mem, offloads);
	if (err)
		goto fail;
	log_debug("net '%s': TAP %s, offloads %#x", id, config->tap, offloads);
	return 0;

fail:
	close(fd);
	return err;
}

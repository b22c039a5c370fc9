/* Each device's counters as a Firecracker metrics section ("block_<id>" into "block",
 * "net_<id>" into "net"), registered when the VM is built. */
#ifndef WISP_DEVICE_METRICS_H
#define WISP_DEVICE_METRICS_H

#include "devices/virtio/blk.h"
#include "devices/virtio/net.h"

int device_metrics_register_blk(const char *id, struct blk_device *blk);
int device_metrics_register_net(const char *id, struct net_device *net);

#endif

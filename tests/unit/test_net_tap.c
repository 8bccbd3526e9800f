/*
 * test_net_tap.c - virtio-net on the tap backend with a real tap
 * interface: the test-side virtio driver sends a frame and it appears on
 * the host side of the tap (an AF_PACKET socket bound to it), and a
 * frame injected on the host side reaches the driver's receive queue.
 * Also the backend's refusals and the QEMU engine's tap arguments.
 *
 * Needs /dev/net/tun and CAP_NET_ADMIN (to create the tap); without
 * /dev/net/tun the real-tap tests print SKIP and pass.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/engine-qemu.h"
#include "fixture-net.h"
#include "fixture-run.h"

/* An EtherType for local experiments (IEEE 802): nothing else on the
 * host sends it, so our frames are told apart from stray traffic. */
#define ETH_TEST 0x88b5

static struct tdrv d, rxq, txq;
static struct virtio_dev *vdev;
static char ifname[IFNAMSIZ];
static int pkt = -1;       /* AF_PACKET socket on the tap's host side */
static int ifindex;
static bool skipped;

static bool have_tun(void)
{
	if (access("/dev/net/tun", F_OK) == 0)
		return true;
	printf("SKIP: /dev/net/tun is missing: no tap tests\n");
	return false;
}

/* IPv6 off (no router solicitations on our tap), ARP off, then up. */
static void host_if_up(void)
{
	char path[128];
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6",
		 ifname);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		ck_assert_int_eq(write(fd, "1", 1), 1);
		close(fd);
	}
	ck_assert_int_ge(s, 0);
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, ifname, strlen(ifname));
	ck_assert_int_eq(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP | IFF_NOARP;
	ck_assert_msg(ioctl(s, SIOCSIFFLAGS, &ifr) == 0, "%s up: %s", ifname,
		      strerror(errno));
	close(s);
	ifindex = (int)if_nametoindex(ifname);
	ck_assert_int_gt(ifindex, 0);
}

static void setup(void)
{
	struct net_backend *be;

	skipped = !have_tun();
	if (skipped)
		return;
	td_init(&d);
	snprintf(ifname, sizeof(ifname), "aptest%d", (int)(getpid() % 100000));
	ck_assert_msg(net_tap__open(ifname, &be) == 0, "%s", virtio__error());
	ck_assert_str_eq(be->name, ifname);
	vdev = fx_net_new(&d, be, NULL);
	fx_net_driver_up(&d, &rxq, &txq, vdev);
	host_if_up();
	pkt = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	ck_assert_int_ge(pkt, 0);
	struct sockaddr_ll sll = { .sll_family = AF_PACKET,
				   .sll_protocol = htons(ETH_P_ALL),
				   .sll_ifindex = ifindex };
	ck_assert_int_eq(bind(pkt, (struct sockaddr *)&sll, sizeof(sll)), 0);
}

static void teardown(void)
{
	if (skipped)
		return;
	if (pkt >= 0)
		close(pkt);
	pkt = -1;
	/* Freeing the device closes the tap fd: the interface goes away. */
	virtio__dev_free(vdev);
	td_fini(&d);
}

static void make_frame(uint8_t *f, size_t len, uint8_t seed)
{
	memset(f, 0xff, 6);                               /* broadcast */
	memcpy(f + 6, "\x02\x00\x00\xa1\xb2\xc3", 6);     /* local unicast */
	f[12] = ETH_TEST >> 8;
	f[13] = ETH_TEST & 0xff;
	for (size_t i = 14; i < len; i++)
		f[i] = (uint8_t)(seed + i);
}

static bool is_ours(const uint8_t *f, size_t len)
{
	return len >= 14 && f[12] == (ETH_TEST >> 8) && f[13] == (ETH_TEST & 0xff);
}

/* Read host-side frames until ours comes (stray ones are skipped).  The
 * bound only turns a hang into a failure. */
static ssize_t host_recv_ours(uint8_t *buf, size_t cap)
{
	for (int i = 0; i < 100; i++) {
		struct pollfd p = { pkt, POLLIN, 0 };
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t r = recv(pkt, buf, cap, 0);
		ck_assert_int_gt(r, 0);
		if (is_ours(buf, (size_t)r))
			return r;
	}
	return -1;
}

START_TEST(guest_frame_reaches_host_side)
{
	if (skipped)
		return;
	uint8_t frame[200], got[2048];
	uint64_t b = td_alloc(&d, 12 + sizeof(frame), 8);
	uint32_t id, len;

	memset(td_ptr(&d, b), 0, 12);
	make_frame((uint8_t *)td_ptr(&d, b) + 12, sizeof(frame), 5);
	memcpy(frame, (uint8_t *)td_ptr(&d, b) + 12, sizeof(frame));
	struct tbuf t = { b, 12 + sizeof(frame), 0 };
	uint16_t head = td_post(&txq, &t, 1, 0);
	virtio__kick(vdev, 1);
	ck_assert_int_eq(td_used(&txq, &id, &len), 1);
	ck_assert_uint_eq(id, head);
	ssize_t r = host_recv_ours(got, sizeof(got));
	ck_assert_int_eq(r, (ssize_t)sizeof(frame));
	ck_assert_mem_eq(got, frame, sizeof(frame));
	struct virtio_net_stats st;
	virtio_net__stats(vdev, &st);
	ck_assert_uint_eq(st.tx_frames, 1);
	ck_assert_uint_eq(st.tx_dropped, 0);
}
END_TEST

START_TEST(host_frame_reaches_guest_rx_queue)
{
	if (skipped)
		return;
	uint8_t frame[1000];
	uint32_t id, len;
	struct sockaddr_ll to = { .sll_family = AF_PACKET,
				  .sll_ifindex = ifindex, .sll_halen = 6 };

	make_frame(frame, sizeof(frame), 9);
	memset(to.sll_addr, 0xff, 6);
	ck_assert_int_eq(sendto(pkt, frame, sizeof(frame), 0,
				(struct sockaddr *)&to, sizeof(to)),
			 (ssize_t)sizeof(frame));
	/* Stray frames may come first: keep posting until ours. */
	for (int tries = 0; tries < 16; tries++) {
		uint64_t b = td_alloc(&d, 12 + 1514, 8);
		struct tbuf t = { b, 12 + 1514, 1 };
		td_post(&rxq, &t, 1, 0);
		virtio__kick(vdev, 0);
		ck_assert_msg(fx_wait_used(&rxq, &id, &len), "no frame reached the "
			      "receive queue");
		uint8_t *p = td_ptr(&d, b);
		if (len < 12 || !is_ours(p + 12, len - 12))
			continue;
		ck_assert_uint_eq(len, 12 + sizeof(frame));
		ck_assert_uint_eq(p[10], 1);                /* num_buffers */
		ck_assert_mem_eq(p + 12, frame, sizeof(frame));
		return;
	}
	ck_abort_msg("our frame never reached the receive queue");
}
END_TEST

START_TEST(bad_names_refused)
{
	struct net_backend *be = (void *)1;

	ck_assert_int_eq(net_tap__open("", &be), -EINVAL);
	ck_assert_ptr_null(be);
	ck_assert_int_eq(net_tap__open("a-very-long-interface-name", &be),
			 -EINVAL);
	ck_assert_int_eq(net_tap__open("tap0,script=/x", &be), -EINVAL);
	ck_assert_ptr_nonnull(strstr(virtio__error(), "bad interface name"));
	ck_assert_int_eq(net_tap__open("../tap", &be), -EINVAL);
	ck_assert(net_tap__valid_name("tap0"));
	ck_assert(net_tap__valid_name("br-lan.1_x"));
	ck_assert(!net_tap__valid_name(NULL));
	ck_assert(!net_tap__valid_name("tap 0"));
}
END_TEST

/* Attaching to an interface that exists but is not a tap (lo) fails
 * with the reason, and nothing leaks. */
START_TEST(not_a_tap_refused)
{
	if (!have_tun())
		return;
	struct net_backend *be = NULL;
	int rc = net_tap__open("lo", &be);
	ck_assert_int_lt(rc, 0);
	ck_assert_ptr_null(be);
	ck_assert_ptr_nonnull(strstr(virtio__error(), "TUNSETIFF"));
}
END_TEST

static int has_arg_pair(char **argv, const char *opt, const char *val)
{
	for (int i = 0; argv[i] && argv[i + 1]; i++)
		if (strcmp(argv[i], opt) == 0 && strcmp(argv[i + 1], val) == 0)
			return 1;
	return 0;
}

START_TEST(qemu_engine_tap_arguments)
{
	struct qemu_engine_config c = { .mem_size = 256ull << 20, .nr_cpus = 1,
					.kernel = "vmlinuz", .tap = "tap7" };
	char **argv = qemu_engine__argv(&c, NULL);

	ck_assert_ptr_nonnull(argv);
	ck_assert(has_arg_pair(argv, "-netdev", "tap,id=net0,ifname=tap7,"
			       "script=no,downscript=no"));
	ck_assert(has_arg_pair(argv, "-device", "virtio-net-device,netdev=net0"));
	qemu_engine__free_argv(argv);
	/* A name that would smuggle QEMU options is refused. */
	c.tap = "tap7,script=/tmp/x";
	ck_assert_ptr_null(qemu_engine__argv(&c, NULL));
}
END_TEST

static Suite *tap_suite(void)
{
	Suite *s = suite_create("net_tap");
	TCase *tc = tcase_create("real tap");
	TCase *tc2 = tcase_create("no tap");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, guest_frame_reaches_host_side);
	tcase_add_test(tc, host_frame_reaches_guest_rx_queue);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	tcase_add_test(tc2, bad_names_refused);
	tcase_add_test(tc2, not_a_tap_refused);
	tcase_add_test(tc2, qemu_engine_tap_arguments);
	suite_add_tcase(s, tc2);
	return s;
}

int main(void)
{
	return fx_run_suite(tap_suite());
}

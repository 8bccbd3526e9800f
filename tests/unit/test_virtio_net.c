/*
 * test_virtio_net.c - virtio-net with the stream backend on one end of a
 * socketpair; the test holds the other end and plays the network peer
 * (speaking the 4-byte big-endian length framing of QEMU/passt).
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture-net.h"
#include "fixture-run.h"

static struct tdrv d, rxq, txq;
static struct virtio_dev *vdev;
static int peer;
static int irqs;

static void count_irq(struct virtio_dev *v, unsigned bits, int q)
{
	(void)v;
	(void)q;
	if (bits & VIRTIO_ISR_QUEUE)
		__atomic_fetch_add(&irqs, 1, __ATOMIC_RELAXED);
}

static void make_dev(const uint8_t *mac)
{
	struct virtio_net_opts o = { .queue_size = 16 };
	struct net_backend *be;
	int sv[2];

	if (mac)
		memcpy(o.mac, mac, 6);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	peer = sv[1];
	ck_assert_int_eq(net_stream__new(sv[0], &be), 0);
	vdev = fx_net_new(&d, be, &o);
	vdev->signal = count_irq;
}

static void driver_up(void)
{
	fx_net_driver_up(&d, &rxq, &txq, vdev);
}

static void setup(void)
{
	td_init(&d);
	irqs = 0;
	make_dev(NULL);
	driver_up();
}

static void teardown(void)
{
	virtio__dev_free(vdev);
	close(peer);
	td_fini(&d);
}

static void peer_send(const void *frame, uint32_t len)
{
	uint8_t h[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16),
			 (uint8_t)(len >> 8), (uint8_t)len };

	ck_assert_int_eq(write(peer, h, 4), 4);
	if (len)
		ck_assert_int_eq(write(peer, frame, len), (ssize_t)len);
}

static uint32_t peer_recv(void *frame, uint32_t cap)
{
	uint8_t h[4];
	uint32_t len, got = 0;

	ck_assert_int_eq(read(peer, h, 4), 4);
	len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 |
	      (uint32_t)h[2] << 8 | h[3];
	ck_assert_uint_le(len, cap);
	while (got < len) {
		ssize_t r = read(peer, (uint8_t *)frame + got, len - got);
		ck_assert_int_gt(r, 0);
		got += (uint32_t)r;
	}
	return len;
}

static uint64_t post_rx(uint32_t size)
{
	uint64_t b = td_alloc(&d, size, 8);
	struct tbuf t = { b, size, 1 };

	td_post(&rxq, &t, 1, 0);
	return b;
}

static void fill(uint8_t *p, uint32_t len, uint8_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed ^ i ^ (i >> 8));
}

START_TEST(transmit_frames)
{
	uint64_t hdr = td_alloc(&d, 12, 8), a = td_alloc(&d, 40, 8),
		 b = td_alloc(&d, 20, 8);
	struct tbuf t[3] = { { hdr, 12, 0 }, { a, 40, 0 }, { b, 20, 0 } };
	uint8_t want[60], got[100];
	uint32_t id, len;
	struct virtio_net_stats st;

	fill(td_ptr(&d, a), 40, 1);
	fill(td_ptr(&d, b), 20, 2);
	memcpy(want, td_ptr(&d, a), 40);
	memcpy(want + 40, td_ptr(&d, b), 20);
	uint16_t head = td_post(&txq, t, 3, 0);
	virtio__kick(vdev, 1);
	ck_assert_int_eq(td_used(&txq, &id, &len), 1);
	ck_assert_uint_eq(id, head);
	ck_assert_uint_eq(peer_recv(got, sizeof(got)), 60);
	ck_assert_mem_eq(got, want, 60);

	/* Header and frame in one buffer. */
	uint64_t one = td_alloc(&d, 12 + 64, 8);
	fill((uint8_t *)td_ptr(&d, one) + 12, 64, 3);
	struct tbuf t1 = { one, 76, 0 };
	td_post(&txq, &t1, 1, 0);
	virtio__kick(vdev, 1);
	ck_assert_uint_eq(peer_recv(got, sizeof(got)), 64);
	ck_assert_mem_eq(got, (uint8_t *)td_ptr(&d, one) + 12, 64);

	/* Only a header (or less): dropped, buffer returned. */
	struct tbuf t2 = { hdr, 12, 0 };
	td_post(&txq, &t2, 1, 0);
	virtio__kick(vdev, 1);
	virtio_net__stats(vdev, &st);
	ck_assert_uint_eq(st.tx_frames, 2);
	ck_assert_uint_eq(st.tx_dropped, 1);
	ck_assert_int_eq(td_used(&txq, &id, &len), 1);
	ck_assert_int_eq(td_used(&txq, &id, &len), 1);
	ck_assert_int_eq(td_used(&txq, &id, &len), 0);
}
END_TEST

/* Post `n` frames of `len` bytes, each one descriptor (header and frame
 * in one buffer, so that 15 fit a 16-entry ring), frame i filled from
 * seed i + 1, its guest address in frames[i]. */
static void post_tx_frames(int n, uint32_t len, uint64_t *frames)
{
	for (int i = 0; i < n; i++) {
		uint64_t b = td_alloc(&d, 12 + len, 8);
		frames[i] = b + 12;
		fill(td_ptr(&d, frames[i]), len, (uint8_t)(i + 1));
		struct tbuf t = { b, 12 + len, 0 };
		td_post(&txq, &t, 1, 0);
	}
}

/* A peer that stops reading (passt stalled, its buffers full) must not
 * block the vCPU that rang the doorbell: it would hang there, beyond the
 * reach of the signal that stops vCPUs, and the monitor with it.  The
 * device keeps the frame it could not send, and the rx thread resumes
 * transmit when the socket drains; frames arrive whole and in order. */
START_TEST(stalled_peer_never_blocks_transmit)
{
	enum { N = 15, LEN = 60000 };       /* ~900 KB: more than a socket
					       pair buffers */
	uint64_t frames[N];
	static uint8_t got[LEN];
	uint32_t id, len;
	int used = 0;

	post_tx_frames(N, LEN, frames);
	virtio__kick(vdev, 1);              /* returns: that is the test */
	while (td_used(&txq, &id, &len))
		used++;
	ck_assert_int_lt(used, N);          /* the socket did fill */
	virtio__kick(vdev, 1);              /* again, still stalled */

	for (int i = 0; i < N; i++) {
		ck_assert_uint_eq(peer_recv(got, sizeof(got)), LEN);
		ck_assert_mem_eq(got, td_ptr(&d, frames[i]), LEN);
	}
	/* The rx thread completes the rest as the socket drains. */
	for (; used < N; used++)
		ck_assert(fx_wait_used(&txq, &id, &len));

	struct virtio_net_stats st;
	virtio_net__stats(vdev, &st);
	ck_assert_uint_eq(st.tx_frames, N);
	ck_assert_uint_eq(st.tx_dropped, 0);

	/* Transmit goes on as before. */
	post_tx_frames(1, 100, frames);
	virtio__kick(vdev, 1);
	ck_assert_uint_eq(peer_recv(got, sizeof(got)), 100);
	ck_assert_mem_eq(got, td_ptr(&d, frames[0]), 100);
}
END_TEST

/* Freeing the device while transmit waits for a stalled peer returns
 * (the monitor's shutdown), and a reset drops the frame it held. */
START_TEST(stalled_transmit_ends_with_the_device)
{
	uint64_t frames[15];

	post_tx_frames(15, 60000, frames);
	virtio__kick(vdev, 1);
	virtio__reset(vdev);
	driver_up();
	post_tx_frames(1, 100, frames);
	virtio__kick(vdev, 1);
	/* teardown frees the device with the socket still full */
}
END_TEST

START_TEST(receive_frames)
{
	uint8_t f[1514];
	uint32_t id, len;

	fill(f, sizeof(f), 9);
	uint64_t b = post_rx(12 + 1514);
	virtio__kick(vdev, 0);
	peer_send(f, sizeof(f));
	ck_assert(fx_wait_used(&rxq, &id, &len));
	ck_assert_uint_eq(len, 12 + 1514);
	uint8_t *p = td_ptr(&d, b);
	ck_assert_uint_eq(p[10], 1);          /* num_buffers */
	ck_assert_uint_eq(p[0], 0);           /* flags */
	ck_assert_mem_eq(p + 12, f, sizeof(f));
	ck_assert_int_ge(__atomic_load_n(&irqs, __ATOMIC_RELAXED), 1);
}
END_TEST

START_TEST(frames_wait_for_buffers)
{
	uint8_t f1[100], f2[200];
	uint32_t id, len;
	struct virtio_net_stats st;

	fill(f1, sizeof(f1), 1);
	fill(f2, sizeof(f2), 2);
	/* No buffers posted: the frames are held, not dropped. */
	peer_send(f1, sizeof(f1));
	peer_send(f2, sizeof(f2));
	usleep(20000);
	ck_assert_int_eq(td_used(&rxq, &id, &len), 0);
	uint64_t b1 = post_rx(2048), b2 = post_rx(2048);
	virtio__kick(vdev, 0);
	ck_assert(fx_wait_used(&rxq, &id, &len));
	ck_assert_uint_eq(len, 112);
	ck_assert(fx_wait_used(&rxq, &id, &len));
	ck_assert_uint_eq(len, 212);
	ck_assert_mem_eq((uint8_t *)td_ptr(&d, b1) + 12, f1, sizeof(f1));
	ck_assert_mem_eq((uint8_t *)td_ptr(&d, b2) + 12, f2, sizeof(f2));
	virtio_net__stats(vdev, &st);
	ck_assert_uint_eq(st.rx_frames, 2);
	ck_assert_uint_eq(st.rx_dropped, 0);
}
END_TEST

START_TEST(byte_at_a_time_framing)
{
	uint8_t f[77], wire[81];
	uint32_t id, len;

	fill(f, sizeof(f), 5);
	wire[0] = wire[1] = wire[2] = 0;
	wire[3] = sizeof(f);
	memcpy(wire + 4, f, sizeof(f));
	uint64_t b = post_rx(1024);
	virtio__kick(vdev, 0);
	/* A zero-length frame first: skipped. */
	peer_send(NULL, 0);
	for (size_t i = 0; i < sizeof(wire); i++) {
		ck_assert_int_eq(write(peer, wire + i, 1), 1);
		if (i % 16 == 0)
			usleep(100);
	}
	ck_assert(fx_wait_used(&rxq, &id, &len));
	ck_assert_uint_eq(len, 12 + sizeof(f));
	ck_assert_mem_eq((uint8_t *)td_ptr(&d, b) + 12, f, sizeof(f));
}
END_TEST

START_TEST(too_small_buffer_drops_the_frame)
{
	uint8_t f[500];
	uint32_t id, len;
	struct virtio_net_stats st;

	fill(f, sizeof(f), 7);
	post_rx(100);
	uint64_t good = post_rx(1024);
	virtio__kick(vdev, 0);
	peer_send(f, sizeof(f));
	peer_send(f, sizeof(f));
	ck_assert(fx_wait_used(&rxq, &id, &len));
	ck_assert_uint_eq(len, 0);
	ck_assert(fx_wait_used(&rxq, &id, &len));
	ck_assert_uint_eq(len, 512);
	ck_assert_mem_eq((uint8_t *)td_ptr(&d, good) + 12, f, sizeof(f));
	virtio_net__stats(vdev, &st);
	ck_assert_uint_eq(st.rx_dropped, 1);
	ck_assert_uint_eq(st.rx_frames, 1);
}
END_TEST

START_TEST(hostile_length_kills_backend_not_device)
{
	uint8_t h[4] = { 0x00, 0x01, 0x00, 0x00 };   /* 65536 > max */
	struct virtio_net_stats st;
	uint8_t got[64];

	post_rx(2048);
	virtio__kick(vdev, 0);
	ck_assert_int_eq(write(peer, h, 4), 4);
	for (int i = 0; i < 20000; i++) {
		virtio_net__stats(vdev, &st);
		if (st.backend_dead)
			break;
		usleep(500);
	}
	ck_assert(st.backend_dead);
	ck_assert_uint_eq(st.rx_frames, 0);
	/* Transmit still works. */
	uint64_t one = td_alloc(&d, 12 + 30, 8);
	fill((uint8_t *)td_ptr(&d, one) + 12, 30, 4);
	struct tbuf t = { one, 42, 0 };
	td_post(&txq, &t, 1, 0);
	virtio__kick(vdev, 1);
	ck_assert_uint_eq(peer_recv(got, sizeof(got)), 30);
}
END_TEST

START_TEST(peer_close_is_noticed)
{
	struct virtio_net_stats st;

	close(peer);
	peer = -1;
	for (int i = 0; i < 20000; i++) {
		virtio_net__stats(vdev, &st);
		if (st.backend_dead)
			break;
		usleep(500);
	}
	ck_assert(st.backend_dead);
	/* Sending to a closed peer fails cleanly (EPIPE is not a signal:
	 * the test would die if it were). */
	uint64_t one = td_alloc(&d, 12 + 30, 8);
	struct tbuf t = { one, 42, 0 };
	td_post(&txq, &t, 1, 0);
	virtio__kick(vdev, 1);
	virtio_net__stats(vdev, &st);
	ck_assert_uint_eq(st.tx_dropped, 1);
}
END_TEST

START_TEST(mac_in_config)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0xAB, 0xCD, 0xEF };

	ck_assert(vdev->features & (1ull << 5));
	ck_assert(vdev->features & (1ull << 3));    /* F_MTU */
	ck_assert_uint_eq(vdev->config_len, 12);
	ck_assert_uint_eq(vdev->config[10] | vdev->config[11] << 8, 1500);
	/* Random MAC: unicast, locally administered. */
	ck_assert_uint_eq(vdev->config[0] & 3, 2);
	ck_assert_uint_eq(vdev->config[6], 1);      /* link up */
	virtio__dev_free(vdev);
	close(peer);
	make_dev(mac);
	ck_assert_mem_eq(vdev->config, mac, 6);
}
END_TEST

START_TEST(frames_before_driver_ok_are_dropped)
{
	uint8_t f[60];
	struct virtio_net_stats st;

	fill(f, sizeof(f), 3);
	virtio__reset(vdev);
	peer_send(f, sizeof(f));
	for (int i = 0; i < 20000; i++) {
		virtio_net__stats(vdev, &st);
		if (st.rx_dropped)
			break;
		usleep(500);
	}
	ck_assert_uint_eq(st.rx_dropped, 1);
}
END_TEST

/* Interop with a real peer: passt answers ARP requests for any address
 * but the guest's own with its gateway MAC.  Skipped (and said so) where
 * passt is not installed. */
START_TEST(passt_answers_arp)
{
	char sock[64];
	char *argv[] = { "passt", "-f", "-1", "-s", sock, NULL };
	posix_spawn_file_actions_t fa;
	struct net_backend *be = NULL;
	struct virtio_net_opts o = { .mac = { 0x52, 0x54, 0, 1, 2, 3 },
				     .queue_size = 16 };
	uint32_t id, len;
	pid_t pid;

	if (access("/usr/bin/passt", X_OK) != 0) {
		printf("passt_answers_arp: skipped, no /usr/bin/passt\n");
		return;
	}
	snprintf(sock, sizeof(sock), "/tmp/test_vnet_passt.%d.sock",
		 (int)getpid());
	unlink(sock);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	ck_assert_int_eq(posix_spawn(&pid, "/usr/bin/passt", &fa, NULL, argv,
				     NULL), 0);
	posix_spawn_file_actions_destroy(&fa);
	/* Hang guard while passt starts, not a timing assertion. */
	for (int i = 0; i < 2000 && !be; i++)
		if (net_stream__connect(sock, &be) < 0)
			usleep(5000);
	ck_assert_msg(be != NULL, "cannot connect to passt: %s",
		      virtio__error());

	virtio__dev_free(vdev);
	vdev = fx_net_new(&d, be, &o);
	vdev->signal = count_irq;
	driver_up();
	uint64_t rx = post_rx(2048);
	virtio__kick(vdev, 0);

	/* ARP who-has 198.51.100.1 tell 198.51.100.2 (TEST-NET-2). */
	uint64_t tx = td_alloc(&d, 12 + 42, 8);
	uint8_t *f = (uint8_t *)td_ptr(&d, tx) + 12;
	static const uint8_t arp[42] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 1, 2, 3,
		0x08, 0x06,                     /* ethertype ARP */
		0, 1, 0x08, 0x00, 6, 4, 0, 1,   /* Ethernet/IPv4, request */
		0x52, 0x54, 0, 1, 2, 3, 198, 51, 100, 2,
		0, 0, 0, 0, 0, 0, 198, 51, 100, 1,
	};
	memcpy(f, arp, sizeof(arp));
	struct tbuf t = { tx, 12 + 42, 0 };
	td_post(&txq, &t, 1, 0);
	virtio__kick(vdev, 1);

	ck_assert(fx_wait_used(&rxq, &id, &len));
	uint8_t *r = (uint8_t *)td_ptr(&d, rx) + 12;
	ck_assert_uint_ge(len, 12 + 42);
	ck_assert_mem_eq(r, arp + 6, 6);            /* to us */
	ck_assert_uint_eq(r[12], 0x08);
	ck_assert_uint_eq(r[13], 0x06);
	ck_assert_uint_eq(r[21], 2);                /* reply */
	ck_assert_mem_eq(r + 28, arp + 38, 4);      /* sender: 198.51.100.1 */
	ck_assert_mem_eq(r + 32, arp + 6, 6);       /* target MAC: ours */

	virtio__dev_free(vdev);
	vdev = NULL;
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	unlink(sock);
	make_dev(NULL);          /* for teardown */
	close(peer);
	peer = -1;
}
END_TEST

START_TEST(jumbo_frames_in_page_chains)
{
	/* With a large MTU Linux posts chains of pages ("big packets");
	 * a 9000-byte frame lands across them, header first. */
	struct virtio_net_opts o = { .queue_size = 16, .mtu = 9000 };
	struct net_backend *be;
	int sv[2];
	uint8_t f[9014];
	uint32_t id, len;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(net_stream__new(sv[0], &be), 0);
	o.mtu = 20;
	struct virtio_dev *bad;
	ck_assert_int_eq(virtio_net__new(be, &o, &d.mem, &bad), -EINVAL);
	ck_assert_ptr_nonnull(strstr(virtio__error(), "MTU 20"));
	close(sv[1]);

	/* The fixture's device is replaced by one with a 9000-byte MTU. */
	virtio__dev_free(vdev);
	close(peer);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	peer = sv[1];
	ck_assert_int_eq(net_stream__new(sv[0], &be), 0);
	o.mtu = 9000;
	vdev = fx_net_new(&d, be, &o);
	vdev->signal = count_irq;
	ck_assert_uint_eq(vdev->config[10] | vdev->config[11] << 8, 9000);
	driver_up();
	fill(f, sizeof(f), 11);
	uint64_t pg[3];
	struct tbuf t[3];
	for (int i = 0; i < 3; i++) {
		pg[i] = td_alloc(&d, 4096, 4096);
		t[i] = (struct tbuf){ pg[i], 4096, 1 };
	}
	td_post(&rxq, t, 3, 0);
	virtio__kick(vdev, 0);
	peer_send(f, sizeof(f));
	ck_assert(fx_wait_used(&rxq, &id, &len));
	ck_assert_uint_eq(len, 12 + sizeof(f));
	uint8_t got[3 * 4096];
	for (int i = 0; i < 3; i++)
		memcpy(got + 4096 * i, td_ptr(&d, pg[i]), 4096);
	ck_assert_mem_eq(got + 12, f, sizeof(f));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("virtio_net");
	TCase *tc = tcase_create("virtio_net");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, transmit_frames);
	tcase_add_test(tc, receive_frames);
	tcase_add_test(tc, frames_wait_for_buffers);
	tcase_add_test(tc, byte_at_a_time_framing);
	tcase_add_test(tc, too_small_buffer_drops_the_frame);
	tcase_add_test(tc, hostile_length_kills_backend_not_device);
	tcase_add_test(tc, peer_close_is_noticed);
	tcase_add_test(tc, mac_in_config);
	tcase_add_test(tc, frames_before_driver_ok_are_dropped);
	tcase_add_test(tc, passt_answers_arp);
	tcase_add_test(tc, jumbo_frames_in_page_chains);
	tcase_add_test(tc, stalled_peer_never_blocks_transmit);
	tcase_add_test(tc, stalled_transmit_ends_with_the_device);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}

/*
 * passt.c - start and stop passt for a VM (see passt.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/passt.h"
#include "runtime/vm.h"

extern char **environ;

#define PASST_MAX_FORWARDS 32

int passt__start(const struct passt_forward *fw, int n, struct passt *out)
{
	char specs[PASST_MAX_FORWARDS][64];
	char *argv[8 + 2 * PASST_MAX_FORWARDS];
	posix_spawn_file_actions_t fa;
	int sv[2], argc = 0, rc;

	out->pid = -1;
	out->fd = -1;
	if (n < 0 || n > PASST_MAX_FORWARDS)
		return vm__err(EINVAL, "at most %d port forwards",
			       PASST_MAX_FORWARDS);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return vm__err(errno, "socketpair: %s", strerror(errno));
	/* -f: stay in the foreground (we reap it); -1: quit when our end
	 * closes; -F 3: the frame stream is the socket on fd 3. */
	argv[argc++] = "passt";
	argv[argc++] = "-q";
	argv[argc++] = "-f";
	argv[argc++] = "-1";
	argv[argc++] = "-F";
	argv[argc++] = "3";
	for (int i = 0; i < n; i++) {
		/* Forwards listen on loopback only: the VM is not exposed to
		 * the network unless the user forwards further. */
		snprintf(specs[i], sizeof(specs[i]), "127.0.0.1/%d:%d",
			 fw[i].host_port, fw[i].guest_port);
		argv[argc++] = fw[i].udp ? "-u" : "-t";
		argv[argc++] = specs[i];
	}
	argv[argc] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	/* passt chats on stderr (running as root, syslog); keep the
	 * console clean. */
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	rc = posix_spawnp(&out->pid, "passt", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(sv[1]);
	if (rc != 0) {
		close(sv[0]);
		out->pid = -1;
		return vm__err(rc, "cannot start passt (the passt package): %s",
			       strerror(rc));
	}
	out->fd = sv[0];
	return 0;
}

void passt__stop(struct passt *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	if (p->pid > 0) {
		kill(p->pid, SIGTERM);
		while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	p->pid = -1;
}

/*
 * floorinit is the floor the benchmark compares the agent with: a minimal
 * static PID 1 that listens on vsock port 1024 at once and, on every
 * connection, writes 64 MiB and closes it. Booted with the agent's kernel
 * and command line, "QEMU start -> connection accepted" is the least any
 * agent can take to be reachable, and its stream is raw vsock speed.
 * It never exits: PID 1 exiting panics the kernel.
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define PORT 1024
#define TOTAL (64u << 20)

static char buf[256 << 10];

int main(void)
{
	struct sockaddr_vm addr;
	int l;

	memset(&addr, 0, sizeof addr);
	addr.svm_family = AF_VSOCK;
	addr.svm_cid = VMADDR_CID_ANY;
	addr.svm_port = PORT;
	l = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(l, 16) < 0) {
		perror("floorinit: vsock listen");
		for (;;)
			pause();
	}
	memset(buf, 'x', sizeof buf);
	for (;;) {
		unsigned int sent = 0;
		int c = accept(l, NULL, NULL);
		if (c < 0)
			continue;
		while (sent < TOTAL) {
			ssize_t n = write(c, buf, sizeof buf);
			if (n <= 0)
				break;
			sent += n;
		}
		close(c);
	}
}

/*
 * floorinit is the floor the benchmark compares the agent with: a minimal
 * static PID 1 that listens on vsock port 1024 at once and, on every
 * connection, writes 64 MiB and closes it. Booted with the agent's kernel
 * and command line, "QEMU start -> connection accepted" is the least any
 * agent can take to be reachable, and its stream is raw vsock speed.
 * On port 1025 it answers requests instead, as an agent answers calls:
 * each request is 4 bytes, a little-endian length, and the reply is that
 * many bytes. Tiny replies give the transport's round trip with nothing
 * behind it; 32 KiB replies the floor of reading a stream 32 KiB per call
 * (the ReadStdout row's shape).
 * It never exits: PID 1 exiting panics the kernel.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define PORT 1024
#define REPLY_PORT 1025
#define TOTAL (64u << 20)

static char buf[256 << 10];

static int listen_vsock(unsigned int port)
{
	struct sockaddr_vm addr;
	int l;

	memset(&addr, 0, sizeof addr);
	addr.svm_family = AF_VSOCK;
	addr.svm_cid = VMADDR_CID_ANY;
	addr.svm_port = port;
	l = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(l, 16) < 0) {
		perror("floorinit: vsock listen");
		for (;;)
			pause();
	}
	return l;
}

/* full reads and writes: a short one ends the connection */
static int readn(int fd, void *p, size_t n)
{
	char *c = p;

	while (n > 0) {
		ssize_t r = read(fd, c, n);
		if (r <= 0)
			return -1;
		c += r;
		n -= r;
	}
	return 0;
}

static int writen(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w <= 0)
			return -1;
		p += w;
		n -= w;
	}
	return 0;
}

static void serve_replies(void)
{
	int l = listen_vsock(REPLY_PORT);

	for (;;) {
		unsigned char req[4];
		int c = accept(l, NULL, NULL);
		if (c < 0)
			continue;
		while (readn(c, req, sizeof req) == 0) {
			uint32_t n = req[0] | req[1] << 8 | req[2] << 16 | (uint32_t)req[3] << 24;
			if (n > sizeof buf || writen(c, buf, n) < 0)
				break;
		}
		close(c);
	}
}

int main(void)
{
	int l;

	/* port 1024 first: the boot row times its first connection */
	l = listen_vsock(PORT);
	memset(buf, 'x', sizeof buf);
	if (fork() == 0) {
		close(l);
		serve_replies();
	}
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

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
 * On port 1026 the replies come from a pipe, as a container's output does:
 * each connection starts a child writing 64 MiB into a pipe 64 KiB at a
 * time (the row's dd bs=64k), and each 4-byte request (the length wanted)
 * is answered with one read of the pipe, sent as a 4-byte little-endian
 * length and the bytes; a length of 0 is the end of the stream.
 * It never exits: PID 1 exiting panics the kernel.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define PORT 1024
#define REPLY_PORT 1025
#define PIPE_PORT 1026
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

static void serve_pipe_connection(int c)
{
	int p[2];
	pid_t writer;
	unsigned char req[4];
	static char rbuf[256 << 10];

	if (pipe(p) < 0)
		return;
	writer = fork();
	if (writer == 0) {
		unsigned int sent = 0;

		close(p[0]);
		close(c);
		while (sent < TOTAL && writen(p[1], buf, 64 << 10) == 0)
			sent += 64 << 10;
		_exit(0);
	}
	close(p[1]);
	while (readn(c, req, sizeof req) == 0) {
		uint32_t n = req[0] | req[1] << 8 | req[2] << 16 | (uint32_t)req[3] << 24;
		ssize_t got;
		unsigned char hdr[4];
		struct iovec iov[2];

		if (n > sizeof rbuf)
			break;
		got = read(p[0], rbuf + 0, n);
		if (got < 0)
			break;
		hdr[0] = got;
		hdr[1] = got >> 8;
		hdr[2] = got >> 16;
		hdr[3] = got >> 24;
		/* one write, as the agent's reply frame */
		iov[0].iov_base = hdr;
		iov[0].iov_len = 4;
		iov[1].iov_base = rbuf;
		iov[1].iov_len = got;
		if (writev(c, iov, 2) != 4 + got)
			break;
	}
	close(p[0]);
	kill(writer, SIGKILL);
	waitpid(writer, NULL, 0);
}

static void serve_pipe(void)
{
	int l = listen_vsock(PIPE_PORT);

	for (;;) {
		int c = accept(l, NULL, NULL);
		if (c < 0)
			continue;
		serve_pipe_connection(c);
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
	if (fork() == 0) {
		close(l);
		serve_pipe();
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

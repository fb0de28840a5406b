/*
 * timeruns runs a command N times in a row inside the guest and prints
 * the wall time of each run in milliseconds, one per line, then "done".
 * The benchmark uses it to time `runc run` of a bundle in the guest
 * without a shell or a host round trip in the measurement.
 * Usage: timeruns N command [args...]
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int n, i;

	if (argc < 3 || (n = atoi(argv[1])) < 1) {
		fprintf(stderr, "usage: timeruns N command [args...]\n");
		return 2;
	}
	for (i = 0; i < n; i++) {
		struct timespec a, b;
		int st;
		pid_t p;

		clock_gettime(CLOCK_MONOTONIC, &a);
		p = fork();
		if (p == 0) {
			execv(argv[2], argv + 2);
			perror("timeruns: exec");
			_exit(127);
		}
		if (p < 0 || waitpid(p, &st, 0) < 0) {
			perror("timeruns");
			return 1;
		}
		clock_gettime(CLOCK_MONOTONIC, &b);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "timeruns: run %d failed (status %#x)\n", i, st);
			return 1;
		}
		printf("%.3f\n", (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
		fflush(stdout);
	}
	printf("done\n");
	return 0;
}

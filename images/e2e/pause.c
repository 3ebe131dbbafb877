/*
 * pause — the sandbox process of the e2e real node's pods (the image
 * localhost/mlctl-e2e/pause:3.10, built by `scripts/images --e2e`).
 *
 * It holds the pod's namespaces open and does nothing else: as PID 1 of a pod
 * that shares its PID namespace it reaps orphaned children, and it exits 0 on
 * SIGINT or SIGTERM so that a stopping sandbox is not reported as failed.
 * Built with `gcc -static`, so the image needs no libc.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig)
{
	(void)sig;
	_exit(0);
}

static void reap(int sig)
{
	int saved = errno;

	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

static int on(int sig, void (*handler)(int), int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
		puts("pause 3.10 (mlctl-e2e)");
		return 0;
	}
	if (getpid() != 1)
		fputs("pause: warning: not PID 1, orphans of the pod are reaped elsewhere\n", stderr);
	if (on(SIGINT, stop, 0) || on(SIGTERM, stop, 0) ||
	    on(SIGCHLD, reap, SA_NOCLDSTOP | SA_RESTART)) {
		perror("pause: sigaction");
		return 1;
	}
	for (;;)
		pause();
}

/*
 * The guest image's /init when the agent lives in its image: attach the
 * image (a compressed read-only file system in a file of the initramfs)
 * to LOOPDEV read-only, mount it as FSTYPE and execute the agent from it,
 * as the same process (PID 1), with the same arguments and environment.
 * A loop device because squashfs mounts block devices only (and erofs,
 * which can mount files, takes them only from file systems that read
 * folios, which tmpfs, the initramfs root, does not).
 *
 * Why: files of the initramfs stay in RAM for the VM's life whether read
 * or not, uncompressed. The agent is most of them; from the image only
 * the pages it runs are decompressed, into the page cache, where the
 * kernel can drop them again under memory pressure.
 *
 * Freestanding (no libc) so that it costs a few KiB of the initramfs: the
 * image builder compiles it with IMAGE, LOOPDEV, MOUNTPOINT, AGENT and
 * FSTYPE defined.
 * x86_64 only, like the guest kernel.
 */

#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_ioctl 16
#define SYS_execve 59
#define SYS_exit 60
#define SYS_mount 165

#define MS_RDONLY 1
#define MS_NOSUID 2
#define MS_NODEV 4

#define O_RDONLY 0
#define O_CLOEXEC 02000000
#define LOOP_SET_FD 0x4C00

static long sys5(long n, long a, long b, long c, long d, long e)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
			 : "rcx", "r11", "memory");
	return ret;
}

static unsigned long length(const char *s)
{
	unsigned long n = 0;
	while (s[n])
		n++;
	return n;
}

static void say(const char *s)
{
	sys5(SYS_write, 2, (long)s, (long)length(s), 0, 0);
}

/* fail reports what failed with the kernel's error number and exits: the
 * kernel then panics ("Attempted to kill init"), which the host sees. */
static void fail(const char *what, long err)
{
	char num[24];
	int i = sizeof(num);
	unsigned long e = (unsigned long)(-err);

	num[--i] = 0;
	num[--i] = '\n';
	do {
		num[--i] = (char)('0' + e % 10);
		e /= 10;
	} while (e && i > 0);
	say("init: ");
	say(what);
	say(": errno ");
	say(&num[i]);
	sys5(SYS_exit, 1, 0, 0, 0, 0);
	for (;;)
		;
}

void stub_main(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	char **envp = argv + argc + 1;
	long img, loop, r;

	img = sys5(SYS_open, (long)IMAGE, O_RDONLY | O_CLOEXEC, 0, 0, 0);
	if (img < 0)
		fail("open " IMAGE, img);
	loop = sys5(SYS_open, (long)LOOPDEV, O_RDONLY | O_CLOEXEC, 0, 0, 0);
	if (loop < 0)
		fail("open " LOOPDEV, loop);
	/* Opened read-only, the image makes the loop device read-only. */
	r = sys5(SYS_ioctl, loop, LOOP_SET_FD, img, 0, 0);
	if (r < 0)
		fail("attach " IMAGE " to " LOOPDEV, r);
	sys5(SYS_close, img, 0, 0, 0, 0);
	sys5(SYS_close, loop, 0, 0, 0, 0);
	r = sys5(SYS_mount, (long)LOOPDEV, (long)MOUNTPOINT, (long)FSTYPE,
		 MS_RDONLY | MS_NOSUID | MS_NODEV, 0);
	if (r < 0)
		fail("mount " IMAGE " (" LOOPDEV ") on " MOUNTPOINT, r);
	if (argc > 0)
		argv[0] = (char *)AGENT;
	r = sys5(SYS_execve, (long)AGENT, (long)argv, (long)envp, 0, 0);
	fail("execute " AGENT, r);
}

/* The kernel enters with argc, argv and envp on the stack; the ABI wants
 * the stack 16-byte aligned at a call. */
__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	xor %ebp, %ebp\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call stub_main\n"
	"	hlt\n");

#!/usr/bin/perl
# escape-probe GROUP: escape attempts from inside the sandbox, one group per
# `run` stage of tests/integration/recipes/escape-probes.yaml.  Each attempt
# appends a line "PASS|FAIL|INFO NAME detail" to /root/escape-results;
# tests/integration/escape.sh reads that file from the host after the build,
# and judges the host itself (canaries, hostname, the log files, the
# listeners of its network namespace): a PASS here is only half of a case.
#
# Safe even against a broken sandbox: kernel knobs (sysrq-trigger,
# core_pattern, /sys) and device nodes are only opened, never written or
# read; reboot, kexec and module syscalls get arguments the kernel refuses;
# writes are attempted only on the test's own canary paths; connections only
# to addresses of the test's private network namespace.
# Settings (canary paths, port, addresses) come from /etc/escape-probe.conf,
# written by a `files` stage from escape-files/probe.conf (a template).
use strict;
use warnings;
use Errno qw(EPERM EACCES EROFS ENOENT ENOSYS EINPROGRESS ENOTDIR ENETUNREACH EHOSTUNREACH ECONNREFUSED);
use Fcntl qw(O_RDONLY O_WRONLY O_RDWR O_CREAT O_EXCL O_APPEND O_NONBLOCK F_GETFL F_SETFL S_IFBLK S_IFCHR);
use POSIX ();
use Socket qw(AF_INET AF_INET6 AF_UNIX SOCK_STREAM SOL_SOCKET SO_ERROR inet_aton inet_pton
	      pack_sockaddr_in pack_sockaddr_in6 pack_sockaddr_un);

my $RESULTS = "/root/escape-results";
my $READ = "/root/escape-read";    # what reads through /proc brought back
my $group = shift @ARGV or die "usage: escape-probe GROUP\n";
my %conf = read_conf("/etc/escape-probe.conf");

# ---- output -------------------------------------------------------------------

sub out {
	my ($kind, $name, $detail) = @_;
	$detail //= "";
	$detail =~ s/[\r\n]+/ /g;
	my $line = "$kind $group-$name $detail\n";
	open(my $f, '>>', $RESULTS) or die "cannot append to $RESULTS: $!\n";
	print $f $line;
	close($f);
	print STDOUT $line;
}
# (the prototype gives every argument scalar context: a match is 1 or "")
sub verdict($$$) { my ($name, $ok, $detail) = @_; out($ok ? "PASS" : "FAIL", $name, $detail); }
sub info { out("INFO", @_); }

sub read_conf {
	my %c;
	open(my $f, '<', $_[0]) or die "cannot read $_[0]: $!\n";
	while (<$f>) {
		chomp;
		$c{$1} = $2 if /^([A-Z0-9_]+)=(.*)$/;
	}
	return %c;
}

sub slurp {    # bounded read of a regular file or proc file; undef + $! on failure
	my ($path, $max) = @_;
	sysopen(my $f, $path, O_RDONLY | O_NONBLOCK) or return undef;
	my $buf = "";
	my $n = sysread($f, $buf, $max // 1 << 20);
	return defined $n ? $buf : undef;
}

sub errname { my $e = $_[0] + 0; return ($e ? "errno $e (" . POSIX::strerror($e) . ")" : "no error"); }

my $have_hires = eval { require Time::HiRes; 1 };
sub now { return $have_hires ? Time::HiRes::time() : time(); }

# ---- raw syscalls -------------------------------------------------------------

my $arch = (POSIX::uname())[4];
my %NR = $arch eq 'x86_64' ? (
	mount => 165, umount2 => 166, pivot_root => 155, unshare => 272, setns => 308, sethostname => 170,
	setdomainname => 171, ptrace => 101, clone => 56, clone3 => 435, open_by_handle_at => 304,
	name_to_handle_at => 303, bpf => 321, perf_event_open => 298, keyctl => 250, add_key => 248,
	init_module => 175, finit_module => 313, delete_module => 176, kexec_load => 246, reboot => 169,
	swapon => 167, io_uring_setup => 425, userfaultfd => 323, syslog => 103, process_vm_readv => 310,
	clock_settime => 227, settimeofday => 164, acct => 163, open_tree => 428, fsopen => 430,
	mount_setattr => 442, ioctl => 16, exit => 60,
    ) : $arch eq 'aarch64' ? (
	mount => 40, umount2 => 39, pivot_root => 41, unshare => 97, setns => 268, sethostname => 161,
	setdomainname => 162, ptrace => 117, clone => 220, clone3 => 435, open_by_handle_at => 265,
	name_to_handle_at => 264, bpf => 280, perf_event_open => 241, keyctl => 219, add_key => 217,
	init_module => 105, finit_module => 273, delete_module => 106, kexec_load => 104, reboot => 142,
	swapon => 224, io_uring_setup => 425, userfaultfd => 282, syslog => 116, process_vm_readv => 270,
	clock_settime => 112, settimeofday => 170, acct => 89, open_tree => 428, fsopen => 430,
	mount_setattr => 442, ioctl => 29, exit => 93,
    ) : ();

# Calls syscall NAME; returns (result, errno).
sub sys {
	my ($name, @args) = @_;
	die "no syscall number for $name on $arch\n" unless exists $NR{$name};
	$! = 0;
	my $r = syscall($NR{$name}, @args);
	return ($r, $! + 0);
}

# A syscall that must fail with one of the errnos listed (default EPERM).
sub must_fail {
	my ($name, $sysname, $args, @want) = @_;
	@want = (EPERM) unless @want;
	unless (%NR) { out("SKIP", $name, "no syscall table for $arch"); return; }
	my ($r, $e) = sys($sysname, @$args);
	my $ok = $r == -1 && grep { $e == $_ } @want;
	verdict($name, $ok, "$sysname returned $r, " . errname($e));
}

sub stat_id { my @s = stat($_[0]); return @s ? "$s[0]:$s[1]" : undef; }
sub lstat_id { my @s = lstat($_[0]); return @s ? "$s[0]:$s[1]" : undef; }

my $ROOT_ID = stat_id("/");

# ---- groups -------------------------------------------------------------------

sub g_caps {
	my $st = slurp("/proc/self/status") // "";
	my %f = $st =~ /^(\w+):\s*(\S+)/mg;
	my $want = $conf{CAPS};    # the kept set, as /proc prints it
	for my $k (qw(CapBnd CapPrm CapEff CapInh)) {
		verdict("$k", ($f{$k} // "") eq $want, "$k " . ($f{$k} // "?") . ", expected $want");
	}
	verdict("CapAmb", ($f{CapAmb} // "") =~ /^0+$/, "CapAmb " . ($f{CapAmb} // "?"));
	verdict("NoNewPrivs", ($f{NoNewPrivs} // "") eq "1", "NoNewPrivs " . ($f{NoNewPrivs} // "?"));
	verdict("Seccomp", ($f{Seccomp} // "") eq "2", "Seccomp " . ($f{Seccomp} // "?"));
	my $bnd = hex($f{CapBnd} // "ffffffffff");
	my %never = (sys_admin => 21, sys_module => 16, sys_rawio => 17, sys_ptrace => 19, net_admin => 12,
		     sys_boot => 22, sys_time => 25, mac_admin => 33, mac_override => 32, syslog => 34,
		     bpf => 39, perfmon => 38, sys_resource => 24, net_raw => 13, dac_read_search => 2);
	for my $c (sort keys %never) {
		verdict("no-cap-$c", !($bnd & (1 << $never{$c})), "bit $never{$c} of CapBnd $f{CapBnd}");
	}
	# The mounts: the image nodev,nosuid; /proc/sys, /sys read-only; /dev
	# and /dev/shm nodev.
	my %mnt;
	for (split /\n/, slurp("/proc/self/mountinfo") // "") {
		my @c = split;
		$mnt{$c[4]} = $c[5];
	}
	for my $m (["/", qr/\bnosuid\b.*\bnodev\b|\bnodev\b.*\bnosuid\b/], ["/proc/sys", qr/^ro\b/], ["/sys", qr/^ro\b/],
		   ["/dev", qr/\bnodev\b/], ["/dev/shm", qr/\bnodev\b/], ["/proc", qr/\bnodev\b/]) {
		my ($path, $want) = @$m;
		verdict("mount-flags" . ($path eq "/" ? "-root" : $path =~ s{/}{-}gr), ($mnt{$path} // "") =~ $want, "$path: " . ($mnt{$path} // "not mounted"));
	}
	# The environment is the cleared default one.
	my @keys = sort keys %ENV;
	verdict("env-cleared", "@keys" eq "DEBIAN_FRONTEND HOME LANG PATH TERM", "variables: @keys");
}

sub g_syscalls {
	mkdir "/mnt";
	must_fail("mount-tmpfs", "mount", ["none", "/mnt", "tmpfs", 0, 0]);
	must_fail("mount-bind-root", "mount", ["/", "/mnt", 0, 4096 | 16384, 0]);    # MS_BIND|MS_REC
	must_fail("mount-proc", "mount", ["proc", "/mnt", "proc", 0, 0]);
	must_fail("remount-root-dev-suid", "mount", ["none", "/", 0, 32, 0]);    # MS_REMOUNT, no nodev/nosuid
	must_fail("remount-proc-sys-rw", "mount", ["none", "/proc/sys", 0, 32 | 4096, 0]);
	must_fail("remount-dev-null-bind", "mount", ["none", "/dev/null", 0, 32 | 4096, 0]);
	must_fail("umount-proc-sys", "umount2", ["/proc/sys", 2]);    # MNT_DETACH
	must_fail("umount-sys", "umount2", ["/sys", 2]);
	must_fail("umount-proc", "umount2", ["/proc", 2]);
	must_fail("mount-setattr", "mount_setattr", [-100, "/", 0, 0, 0]);
	must_fail("open-tree", "open_tree", [-100, "/", 1]);    # OPEN_TREE_CLONE
	must_fail("fsopen", "fsopen", ["tmpfs", 0]);
	chdir("/");
	must_fail("pivot-root", "pivot_root", [".", "."]);
	# unshare(0) does nothing and succeeds without a filter: EPERM proves it.
	must_fail("unshare-0-seccomp", "unshare", [0]);
	must_fail("unshare-user", "unshare", [0x10000000]);
	must_fail("unshare-mount", "unshare", [0x00020000]);
	must_fail("unshare-net", "unshare", [0x40000000]);
	must_fail("unshare-pid", "unshare", [0x20000000]);
	{    # clone(CLONE_NEWUSER | SIGCHLD): a child that got through exits at once
		my ($r, $e) = %NR ? sys("clone", 0x10000000 | 17, 0, 0, 0, 0) : (-1, 0);
		if ($r == 0) { syscall($NR{exit}, 0); }
		waitpid($r, 0) if $r > 0;
		verdict("clone-newuser", $r == -1 && $e == EPERM, "clone returned $r, " . errname($e));
	}
	must_fail("clone3", "clone3", [0, 0], ENOSYS, EPERM);
	{
		my $ok = open(my $ns, '<', "/proc/self/ns/mnt");
		if ($ok) { must_fail("setns-own-mnt", "setns", [fileno($ns), 0]); }
		else { verdict("setns-own-mnt", 0, "cannot open /proc/self/ns/mnt: $!"); }
		my $ok1 = open(my $ns1, '<', "/proc/1/ns/mnt");
		verdict("open-pid1-ns", !$ok1, $ok1 ? "opened /proc/1/ns/mnt" : "open: $!");
		must_fail("setns-pid1-mnt", "setns", [fileno($ns1), 0]) if $ok1;
	}
	my $before = (POSIX::uname())[1];
	must_fail("sethostname", "sethostname", ["escaped", 7]);
	must_fail("setdomainname", "setdomainname", ["escaped", 7]);
	my $after = (POSIX::uname())[1];
	verdict("hostname-inside", $after eq $before && $after eq "localhost", "nodename '$before' -> '$after'");
	must_fail("ptrace-attach-pid1", "ptrace", [16, 1, 0, 0]);    # PTRACE_ATTACH
	must_fail("ptrace-seize-pid1", "ptrace", [0x4206, 1, 0, 0]);    # PTRACE_SEIZE
	{
		my $buf = "\0" x 64;
		my $liov = pack("P Q", $buf, 64);
		my $riov = pack("Q Q", 0x400000, 64);
		must_fail("process-vm-readv-pid1", "process_vm_readv", [1, $liov, 1, $riov, 1, 0]);
	}
	must_fail("open-by-handle-at", "open_by_handle_at", [-100, 0, 0]);
	must_fail("name-to-handle-at", "name_to_handle_at", [-100, "/", 0, 0, 0]);
	must_fail("bpf", "bpf", [0, 0, 0]);
	must_fail("perf-event-open", "perf_event_open", [0, 0, -1, -1, 0]);
	must_fail("keyctl", "keyctl", [0, 0, 0, 0, 0]);
	must_fail("add-key", "add_key", ["user", "escape", 0, 0, -2]);
	must_fail("init-module", "init_module", [0, 0, ""]);
	must_fail("finit-module", "finit_module", [-1, "", 0]);
	must_fail("delete-module", "delete_module", ["escape_none", 0]);
	must_fail("kexec-load", "kexec_load", [0, 0, 0, 0]);
	must_fail("reboot-bad-magic", "reboot", [0, 0, 0, 0]);    # bad magic: the kernel refuses it anyway
	must_fail("swapon", "swapon", ["/nonexistent", 0]);
	must_fail("acct", "acct", [0]);
	must_fail("io-uring-setup", "io_uring_setup", [1, "\0" x 120]);
	must_fail("userfaultfd", "userfaultfd", [0]);
	must_fail("syslog-size", "syslog", [10, 0, 0]);    # SYSLOG_ACTION_SIZE_BUFFER: reads nothing
	must_fail("clock-settime", "clock_settime", [0, 0]);    # NULL: EFAULT without the filter
	must_fail("settimeofday", "settimeofday", [0, 0]);    # NULL, NULL: a no-op without the filter
	must_fail("ioctl-tiocsti", "ioctl", [0, 0x5412, "x"]);    # on /dev/null: ENOTTY without the filter
	# unshare(1) from util-linux, as a user would try it.
	for my $opt (qw(-U -m -n -p)) {
		my $rc = system("unshare $opt -f true >/dev/null 2>&1");
		verdict("unshare-tool$opt", $rc != 0, "unshare $opt exited " . ($rc >> 8));
	}
	my $rc = system("unshare -U -r true >/dev/null 2>&1");
	verdict("unshare-tool-map-root", $rc != 0, "unshare -U -r exited " . ($rc >> 8));
	$rc = system("mount -t tmpfs none /mnt >/dev/null 2>&1");
	verdict("mount-tool", $rc != 0, "mount exited " . ($rc >> 8));
	$rc = system("nsenter -t 1 -m -u -n true >/dev/null 2>&1");
	verdict("nsenter-pid1", $rc != 0, "nsenter exited " . ($rc >> 8));
}

# The classic chroot escapes (CAP_SYS_CHROOT is kept): they must end in the image.
sub g_chroot {
	verdict("root-is-image", -e "/etc/escape-probe.conf", "/etc/escape-probe.conf " . (-e "/etc/escape-probe.conf" ? "present" : "absent"));
	mkdir "/tmp/escape-jail";
	my $pid = fork();
	if ($pid == 0) {
		opendir(my $top, "/") or POSIX::_exit(3);
		chroot("/tmp/escape-jail") or POSIX::_exit(4);
		chdir($top) or POSIX::_exit(5);    # fchdir out of the new root
		chdir("..") for 1 .. 64;
		chroot(".") or POSIX::_exit(6);
		chdir("/");
		my $id = stat_id("/") // "none";
		my $esc = (-e $conf{CANARY} || -e "/proc/1/root$conf{CANARY}") ? 1 : 0;
		POSIX::_exit($id eq $ROOT_ID && !$esc && -e "/etc/escape-probe.conf" ? 0 : 1);
	}
	waitpid($pid, 0);
	my $st = $? >> 8;
	verdict("fchdir-double-chroot", $st == 0, "child exit $st (0: still in the image)");
	$pid = fork();
	if ($pid == 0) {
		chroot("/tmp/escape-jail") or POSIX::_exit(4);
		# the cwd stayed outside the new root: climb from there
		chdir("..") for 1 .. 64;
		chroot(".") or POSIX::_exit(6);
		chdir("/");
		my $id = stat_id("/") // "none";
		POSIX::_exit($id eq $ROOT_ID && !-e $conf{CANARY} ? 0 : 1);
	}
	waitpid($pid, 0);
	$st = $? >> 8;
	verdict("dotdot-chroot", $st == 0, "child exit $st (0: the host canary is not visible)");
}

sub g_proc {
	mkdir $READ;
	# A few more processes to look at: a shell and its child, with a cwd of
	# their own.
	my $kid = fork();
	if ($kid == 0) { POSIX::setpgid(0, 0); chdir("/tmp"); exec("sh", "-c", "sleep 60 & exec sleep 60"); }
	select(undef, undef, undef, 0.3);
	# Every process's root and cwd: the image, or not visible at all.
	my @pids = sort { $a <=> $b } grep { /^\d+$/ } map { s{^/proc/}{}r } glob("/proc/[0-9]*");
	info("pids", "@pids");
	my @top = sort(glob("/*"));
	for my $p (@pids) {
		for my $what (qw(root cwd)) {
			my $l = readlink("/proc/$p/$what");
			my $le = $!;
			my $id = stat_id("/proc/$p/$what/.");
			my $e = $! + 0;
			if ($what eq "root") {
				my $ok = defined $id ? $id eq $ROOT_ID : ($e == EACCES);
				verdict("pid$p-root", $ok, defined $id ? "readlink " . ($l // "?") . ", dev:ino $id (image $ROOT_ID)"
								 : "stat: " . errname($e));
				if (defined $id) {
					my @list = sort map { s{^/proc/$p/root}{}r } glob("/proc/$p/root/*");
					verdict("pid$p-root-listing", "@list" eq "@top", "ls /proc/$p/root/ equals ls /: " . ("@list" eq "@top" ? "yes" : "no"));
				}
			} else {
				my @s = stat("/proc/$p/cwd/.");
				my $ok = @s ? $s[0] == (stat("/"))[0] : ($e == EACCES);
				verdict("pid$p-cwd", $ok, @s ? "cwd " . ($l // "?") . " on dev $s[0]" : "stat: " . errname($e));
			}
		}
	}
	verdict("self-root", (readlink("/proc/self/root") // "") eq "/" && stat_id("/proc/self/root/.") eq $ROOT_ID,
		"readlink /proc/self/root: " . (readlink("/proc/self/root") // "?"));

	# Reading the host's files through the /proc roots: copies are judged
	# from the host (none may equal the host's canary).
	my $n = 0;
	for my $path ("/proc/1/root$conf{CANARY}", "/proc/self/root$conf{CANARY}", $conf{CANARY},
		      "/proc/1/cwd$conf{CANARY}", "/proc/self/cwd/../../../../../..$conf{CANARY}") {
		my $c = slurp($path);
		$n++;
		if (defined $c) {
			open(my $f, '>', "$READ/canary.$n");
			print $f $c;
			close($f);
		}
		info("read-canary-$n", "$path: " . (defined $c ? "read " . length($c) . " bytes (judged by the host)" : "$!"));
	}
	# The host's /etc/shadow by hash only (the host compares).
	for my $pfx ("/proc/1/root", "/proc/self/root", "/proc/1/cwd/../../../..") {
		my $name = $pfx =~ s{\W+}{-}gr;
		my $ok = -r "$pfx/etc/shadow" && open(my $t, '<', "$pfx/etc/shadow");
		system("sha256sum < '$pfx/etc/shadow' > '$READ/shadow$name.sum' 2>/dev/null") if $ok;
		info("read-shadow$name", $ok ? "readable: hash judged by the host" : "not readable: $!");
	}
	# Writing the host's files through them: the host judges the canaries.
	for my $pfx ("/proc/1/root", "/proc/self/root", "") {
		my $name = ($pfx =~ s{\W+}{-}gr) || "-plain";
		my $path = "$pfx$conf{CANARY}";
		if (sysopen(my $f, $path, O_WRONLY | O_APPEND)) {
			syswrite($f, "escaped through $pfx\n");
			info("append-canary$name", "opened $path for writing: the host judges");
		} else {
			info("append-canary$name", "$path: $!");
		}
		chmod(0666, $path);
		(my $dir = $conf{CANARY_NEW}) =~ s{/[^/]*$}{};
		my $new = "$pfx$conf{CANARY_NEW}";
		if ($pfx eq "/proc/self/root") {    # the image: the file lands in it
			system("mkdir", "-p", "$pfx$dir");
			my $ok = sysopen(my $g, $new, O_WRONLY | O_CREAT | O_EXCL, 0644);
			print $g "written through /proc/self/root\n" if $ok;
			close($g) if $ok;
			verdict("create-via-self-root-in-image", $ok && -e $conf{CANARY_NEW}, "$new: " . ($ok ? "created, in the image" : "$!"));
		} elsif ($pfx eq "/proc/1/root") {
			my $ok = sysopen(my $g, $new, O_WRONLY | O_CREAT | O_EXCL, 0644);
			info("create-via-pid1-root", "$new: " . ($ok ? "created (the host judges where)" : "$!"));
		}
	}

	# PID 1 is a fork of the engine: its memory and environment stay closed.
	for my $f (qw(environ mem maps stack auxv syscall personality io task/1/environ task/1/mem)) {
		# some check at open, some at read
		my $c = slurp("/proc/1/$f", 4096);
		verdict("pid1-" . ($f =~ s{/}{-}gr), !defined $c || $c eq "", defined $c ? "/proc/1/$f: read " . length($c) . " bytes" : "/proc/1/$f: $!");
	}
	for my $d (qw(fd fdinfo map_files task/1/fd ns)) {
		my $ok = opendir(my $h, "/proc/1/$d");
		my @e = $ok ? grep { !/^\.\.?$/ } readdir($h) : ();
		# ns/ lists names to everyone; opening them is what matters (above)
		my $links = $ok ? scalar(grep { defined readlink("/proc/1/$d/$_") } @e) : 0;
		my $opened = $ok ? scalar(grep { sysopen(my $x, "/proc/1/$d/$_", O_RDONLY | O_NONBLOCK) } @e) : 0;
		verdict("pid1-" . ($d =~ s{/}{-}gr), !$ok || ($links == 0 && $opened == 0),
			$ok ? scalar(@e) . " entries, $links readable links, $opened opened" : "/proc/1/$d: $!");
	}
	{
		my $c = slurp("/proc/1/cmdline");
		info("pid1-cmdline", defined $c ? "readable (" . length($c) . " bytes): the engine's command line is visible" : "not readable: $!");
	}
	# Every environment this jail can read, dumped into the image: the host
	# greps the image for its secret.
	open(my $dump, '>', "$READ/environ");
	for my $p (@pids, "self") {
		my $c = slurp("/proc/$p/environ");
		print $dump "== $p\n", ($c // "unreadable: $!"), "\n";
	}
	close($dump);

	# Kernel-wide knobs: opened for writing must fail; never written.
	for my $k ("/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe",
		   "/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches", "/proc/sys/kernel/panic",
		   "/proc/sys/fs/binfmt_misc/register", "/proc/sys/kernel/sysrq") {
		my $name = $k =~ s{^/proc/}{}r =~ s{\W+}{-}gr;
		if (!-e $k) { verdict("write-$name", 1, "$k absent on this kernel"); next; }
		my $ok = sysopen(my $h, $k, O_WRONLY);
		verdict("write-$name", !$ok, $ok ? "$k opened for writing (nothing written)" : "$k: $!");
	}
	{
		my $ok = sysopen(my $h, "/proc/kmsg", O_RDONLY | O_NONBLOCK);
		verdict("open-kmsg", !$ok, $ok ? "/proc/kmsg opened (not read)" : "/proc/kmsg: $!");
	}
	for my $k (qw(kcore keys timer_list sched_debug latency_stats)) {
		if (!-e "/proc/$k") { verdict("masked-$k", 1, "absent"); next; }
		my $c = slurp("/proc/$k", 4096);
		verdict("masked-$k", !defined $c || length($c) == 0, defined $c ? length($c) . " bytes" : "$!");
	}
	for my $k ("/sys/kernel/mm/transparent_hugepage/enabled", "/sys/power/state", "/sys/kernel/uevent_helper",
		   "/sys/module/printk/parameters/time", "/sys/class/net/lo/mtu") {
		next unless -e $k;
		my $name = $k =~ s{^/sys/}{}r =~ s{\W+}{-}gr;
		my $ok = sysopen(my $h, $k, O_WRONLY);
		verdict("sys-write-$name", !$ok, $ok ? "$k opened for writing (nothing written)" : "$k: $!");
	}
	my $ok = mkdir("/sys/fs/cgroup/escape");
	verdict("sys-cgroup-mkdir", !$ok, $ok ? "made /sys/fs/cgroup/escape" : "$!");
	$ok = mkdir("/proc/sys/escape");
	verdict("proc-sys-mkdir", !$ok, $ok ? "made /proc/sys/escape" : "$!");
	kill("KILL", -$kid, $kid);
	waitpid($kid, 0);
}

sub g_devices {
	# The sandbox's own /dev works...
	my $n;
	my $ok = sysopen($n, "/dev/null", O_WRONLY) && syswrite($n, "x") == 1;
	verdict("dev-null-works", $ok, "/dev/null: " . ($ok ? "writable" : "$!"));
	my $z = slurp("/dev/zero", 16);
	verdict("dev-zero-works", defined $z && length($z) == 16, "/dev/zero");
	# ...and holds nothing of the host's disks.
	my @dev = sort map { s{^/dev/}{}r } glob("/dev/*");
	my @blk = grep { -b "/dev/$_" } @dev;
	verdict("dev-no-block-devices", !@blk, "/dev: @dev");
	# Nodes made here open nothing: the image, /dev, /dev/shm and /tmp are nodev.
	my %nodes = (hostdisk => [S_IFBLK, $conf{HOSTDISK}, O_RDONLY], scratch => [S_IFBLK, $conf{SCRATCH}, O_RDWR],
		     mem => [S_IFCHR, "1:1", O_RDONLY], port => [S_IFCHR, "1:4", O_RDONLY],
		     kmsg => [S_IFCHR, "1:11", O_RDONLY], "loop-control" => [S_IFCHR, "10:237", O_RDONLY],
		     tun => [S_IFCHR, "10:200", O_RDONLY], fuse => [S_IFCHR, "10:229", O_RDONLY]);
	for my $dir ("/root", "/dev", "/dev/shm", "/tmp") {
		for my $k (sort keys %nodes) {
			my ($type, $mm, $mode) = @{ $nodes{$k} };
			my ($maj, $min) = split(/:/, $mm);
			my $path = "$dir/escape-$k";
			unlink($path);
			my $rc = system("mknod", $path, $type == S_IFBLK ? "b" : "c", $maj, $min);
			if ($rc != 0) { verdict("mknod-open-$k" . ($dir =~ s{/}{-}gr), 1, "mknod $path refused"); next; }
			my $o = sysopen(my $h, $path, $mode | O_NONBLOCK);
			my $e = $!;
			# nothing is ever read or written through it
			verdict("mknod-open-$k" . ($dir =~ s{/}{-}gr), !$o, "mknod $path $mm: made; open: " . ($o ? "OPENED" : $e));
			close($h) if $o;
			unlink($path);
		}
	}
}

sub g_fds {
	# What a command inherits: 0, 1, 2, and the directory being listed.
	opendir(my $d, "/proc/self/fd") or die;
	my @fds = sort { $a <=> $b } grep { /^\d+$/ } readdir($d);
	my %l = map { $_ => (readlink("/proc/self/fd/$_") // "?") } @fds;
	my @extra = grep { $_ > 2 && $l{$_} !~ m{^/proc/\d+/fd$} } @fds;
	verdict("inherited-fds", !@extra && "@fds" =~ /^0 1 2( \d+)?$/, join(", ", map { "$_ -> $l{$_}" } @fds));
	verdict("stdin-dev-null", $l{0} eq "/dev/null", "0 -> $l{0}");
	info("stdout", "1 -> $l{1}");
	closedir($d);
	# A child shell's view too (what every run command gets).
	my $sh = `sh -c 'ls /proc/\$\$/fd' 2>&1`;
	verdict("shell-fds", join(" ", sort { $a <=> $b } split(/\s+/, $sh)) =~ /^0 1 2( 10)?( \d+)?$/, "sh sees: " . join(" ", split(/\s+/, $sh)));

	# No fd of any visible process (other than the log on 1 and 2) leads
	# outside the image; PID 1's are not even visible.
	my @pids = grep { /^\d+$/ } map { s{^/proc/}{}r } glob("/proc/[0-9]*");
	for my $p (@pids) {
		my $ok = opendir(my $h, "/proc/$p/fd");
		if (!$ok) { verdict("pid$p-fds", $! == EACCES, "/proc/$p/fd: $!"); next; }
		my @bad;
		for my $fd (grep { /^\d+$/ } readdir($h)) {
			my $l = readlink("/proc/$p/fd/$fd");
			if (!defined $l) { push @bad, "$fd: readlink $!" if $p != 1; next; }
			next if $fd <= 2 && $l eq $l{1};             # the stage log
			next if $l =~ m{^/proc/\d+/fd$};             # a listing like ours
			my $via = stat_id("/proc/$p/fd/$fd");
			my $inside = lstat("$l") ? stat_id($l) : undef;
			push @bad, "$fd -> $l" unless defined $via && defined $inside && $via eq $inside;
		}
		verdict("pid$p-fds", !@bad, @bad ? "outside the image: @bad" : "all inside the image");
	}

	# The log on stdout is the host's file: writing is allowed (it is the
	# log), changing it is not: the host checks mode and owner afterwards.
	my $c = chmod(0604, \*STDOUT);
	info("fchmod-stdout", $c ? "fchmod(1, 0604) succeeded: the host judges the log's mode" : "fchmod: $!");
	$c = chown(65534, 65534, \*STDOUT);
	info("fchown-stdout", $c ? "fchown(1) succeeded: the host judges the log's owner" : "fchown: $!");
	for my $how ([O_WRONLY | O_APPEND, "append"], [O_RDONLY, "read"]) {
		my $ok = sysopen(my $h, "/proc/self/fd/1", $how->[0]);
		info("reopen-stdout-$how->[1]", $ok ? "reopened /proc/self/fd/1 ($how->[1]): it is the stage's own log" : "$!");
	}
	my $ok = opendir(my $up, "/proc/self/fd/1/..");
	verdict("stdout-parent-dir", !$ok, $ok ? "opened the log's directory" : "/proc/self/fd/1/..: $!");
	$ok = sysopen(my $lh, "/proc/self/fd/1/../journal", O_RDONLY);
	verdict("stdout-sibling-journal", !$ok, $ok ? "opened the journal" : "$!");
}

# ---- network ----------------------------------------------------------------------

sub routes {    # IPv4 routes: [dest, mask, flags]
	my @r;
	open(my $f, '<', "/proc/net/route") or return ();
	<$f>;
	while (<$f>) {
		my @c = split;
		push @r, [ map { hex } @c[1, 7, 3] ];
	}
	return @r;
}
sub v6routes {    # [dest hex, prefix len, flags]
	my @r;
	open(my $f, '<', "/proc/net/ipv6_route") or return ();
	push @r, [ (split)[0], hex((split)[1]), hex((split)[8]) ] while <$f>;
	return @r;
}
sub has_default { return (grep { $_->[0] == 0 && $_->[1] == 0 && !($_->[2] & 0x200) } routes()) ? 1 : 0; }
sub has_default6 { return (grep { $_->[1] == 0 && !($_->[2] & 0x200) && $_->[0] =~ /^0+$/ } v6routes()) ? 1 : 0; }
# The unreachable (RTF_REJECT) route for 169.254.0.0/16 (little-endian in /proc).
sub imds_rejected { return (grep { $_->[0] == 0x0000FEA9 && $_->[1] == 0x0000FFFF && ($_->[2] & 0x200) } routes()) ? 1 : 0; }
sub imds6_rejected { return (grep { $_->[0] =~ /^fd000ec2/ && $_->[1] == 32 && ($_->[2] & 0x200) } v6routes()) ? 1 : 0; }

# (result, seconds): "connected", "timeout" or the connect error.
sub tcp {
	my ($addr, $port, $timeout) = @_;
	my $v6 = $addr =~ /:/;
	my $sa = $v6 ? pack_sockaddr_in6($port, inet_pton(AF_INET6, $addr)) : pack_sockaddr_in($port, inet_aton($addr));
	socket(my $s, $v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0) or return ("socket: $!", 0);
	fcntl($s, F_SETFL, fcntl($s, F_GETFL, 0) | O_NONBLOCK);
	my $t0 = now();
	return ("connected", now() - $t0) if connect($s, $sa);
	return ("$!", now() - $t0) if $! != EINPROGRESS;
	my $w = "";
	vec($w, fileno($s), 1) = 1;
	my $n = select(undef, my $wo = $w, undef, $timeout);
	return ("timeout", now() - $t0) if !$n;
	my $err = unpack("i", getsockopt($s, SOL_SOCKET, SO_ERROR));
	return ("connected", now() - $t0) if !$err;
	$! = $err;
	return ("$!", now() - $t0);
}

# Must not connect; FAST: must fail within a second.
sub no_connect {
	my ($name, $addr, $port, $fast) = @_;
	my ($r, $t) = tcp($addr, $port, 2);
	my $ok = $r ne "connected" && (!$fast || ($r ne "timeout" && $t < 1));
	verdict($name, $ok, sprintf("%s port %d: %s after %.2fs", $addr, $port, $r, $t));
}

sub g_net_off {
	my @r = routes();
	my $def = has_default() || has_default6();
	verdict("no-default-route", !$def, "routes: " . join(" ", map { sprintf("%08x/%08x:%x", @$_) } @r));
	my @ifs = map { /^\s*([^:\s]+):/ ? $1 : () } split /\n/, (slurp("/proc/net/dev") // "");
	verdict("only-loopback", "@ifs" eq "lo", "interfaces: @ifs");
	my $P = $conf{PORT};
	no_connect("loopback", "127.0.0.1", $P, 1);
	no_connect("loopback6", "::1", $P, 1);
	return verdict("off-namespace-probes", 0, "not attempted: the jail has a default route") if $def;
	no_connect("lan-peer", $conf{LANPEER}, $P, 1);
	no_connect("gateway", $conf{GATEWAY}, $P, 1);
	no_connect("host-address", $conf{HOSTADDR}, $P, 1);
	no_connect("host-address6", $conf{HOSTADDR6}, $P, 1);
	no_connect("imds", "169.254.169.254", 80, 1);
	no_connect("imds6", "fd00:ec2::254", 80, 1);
	my ($r) = tcp($conf{LANPEER}, $P, 2);
	verdict("enetunreach", $r eq POSIX::strerror(ENETUNREACH), "connect to $conf{LANPEER}: $r");
}

sub g_net_on {
	my $P = $conf{PORT};
	verdict("default-route", has_default(), "a default route through pasta");
	my $rej = imds_rejected();
	verdict("imds-route-unreachable", $rej, "169.254.0.0/16 has " . ($rej ? "an unreachable route" : "NO unreachable route"));
	my $rej6 = imds6_rejected();
	verdict("imds6-route-unreachable", $rej6 || !has_default6(), "fd00:ec2::/32: " . ($rej6 ? "unreachable route" : has_default6() ? "NO unreachable route" : "no IPv6 default route"));
	# Only with the route in place (the connect then never leaves the jail).
	if ($rej) {
		no_connect("imds", "169.254.169.254", 80, 1);
		no_connect("imds-port", "169.254.169.254", $P, 1);
		my ($r) = tcp("169.254.169.254", 80, 2);
		verdict("imds-ehostunreach", $r eq POSIX::strerror(EHOSTUNREACH), "connect: $r");
	}
	no_connect("imds6", "fd00:ec2::254", 80, 1) if $rej6;
	# The build host's loopback, under every name it could have in here.
	no_connect("loopback", "127.0.0.1", $P, 0);
	no_connect("loopback6", "::1", $P, 0);
	no_connect("gateway", $conf{GATEWAY}, $P, 0);
	no_connect("gateway6", $conf{GATEWAY6}, $P, 0);
	no_connect("host-address", $conf{HOSTADDR}, $P, 0);
	no_connect("host-address6", $conf{HOSTADDR6}, $P, 0);
	no_connect("slirp-host", "10.0.2.2", $P, 0);
	no_connect("dns-forward-addr", "10.0.2.3", $P, 0);
	# The control: the network itself works (a peer on the host's LAN).
	my ($r, $t) = tcp($conf{LANPEER}, $P, 5);
	verdict("lan-peer-reachable", $r eq "connected", sprintf("%s port %d: %s after %.2fs", $conf{LANPEER}, $P, $r, $t));
	# The resolver file is the jail's, bound read-only.
	my $rc = slurp("/etc/resolv.conf") // "";
	my $hr = $conf{HOSTRESOLVER} // "";
	verdict("resolv-conf-jails", $rc =~ /^nameserver 10\.0\.2\.3$/m && ($hr eq "" || index($rc, $hr) < 0), "resolv.conf: $rc");
	my $ok = sysopen(my $h, "/etc/resolv.conf", O_WRONLY | O_APPEND);
	verdict("resolv-conf-readonly", !$ok, $ok ? "opened for writing" : "$!");
	must_fail("remount-resolv-conf-rw", "mount", ["none", "/etc/resolv.conf", 0, 32 | 4096, 0]);
	must_fail("umount-resolv-conf", "umount2", ["/etc/resolv.conf", 2]);
}

my %groups = (caps => \&g_caps, syscalls => \&g_syscalls, chroot => \&g_chroot, proc => \&g_proc,
	      devices => \&g_devices, fds => \&g_fds, "net-off" => \&g_net_off, "net-on" => \&g_net_on);
die "unknown group $group\n" unless $groups{$group};
$groups{$group}->();
out("END", "done", "");

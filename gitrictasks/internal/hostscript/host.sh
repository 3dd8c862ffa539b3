# gitric's host script. One run drives one host through one operation,
# in one SSH session. It reaches /bin/sh over the session's standard input
# (see bootstrap in script.go), never through the login shell's parser, and
# gitric puts the values it needs before this text:
#   T        token that starts every protocol line, both ways
#   ACTION   deploy, rollback, swap, status, unlock
#   P        deploy root (relative to the home directory of the user the
#            script runs as, or absolute)
#   MODE     inplace: $P is the repository and the working copy;
#            release: $P/repo holds the objects, each deploy checks out
#              $P/releases/<time>-<sha>, $P/current points at the live one;
#            bluegreen: $P/repo, working copies $P/blue and $P/green,
#              $P/live and $P/next point at them; deploys go to next.
#   NEW      the commit a deploy pushes (deploy only)
#   KEEP     releases to keep (release mode)
#   STOP START CHECK     service commands (may be empty)
#   STOPWAIT STARTWAIT   seconds each may run before it is killed
#   CHECKWAIT            seconds the check may take to pass, in all
#   LOCK     lock owner description; empty: take no lock
#   LOCKWAIT seconds to wait for a lock held by a live deploy
#   ADOPT    1: take over a git repository that gitric did not create
#   AUDITLOG 1: report the audit log's last lines
#   AUD      the start of this run's audit entries, as a JSON object
#            without its closing brace
#   SUBMODULES  1: check out the submodules each deployed tree records
#   BUILD ONCE  the build (every host) and run-once commands, or empty
#   BUILDWAIT ONCEWAIT   their timeouts, in seconds
#   SHARED   shared paths, one per line ("dir/" for a directory)
#   OVERLAP  1: release mode starts the new version before stopping the old
#   HTTPCHECK   1: after the checks, ask gitric for its HTTP check's verdict
#   colorenv()  exports a colour's settings (bluegreen)
#   svcenv()    exports the stage's environment and secrets
#
# Standard output carries only the protocol: "$T word args" lines, and git
# receive-pack's own stream between "ready" and "seeded". Everything meant
# for people goes to standard error, which gitric prints prefixed by host.
# Service commands get descriptors of their own (a log file under the
# gitric directory, shown when they end), so a command that leaves a daemon
# behind does not hold the session open.
set -u
trap : PIPE
say() { printf '%s %s\n' "$T" "$*"; }
# die CODE MESSAGE: the one error of this run.
die() { say error "$1" "$2"; exit 1; }
me() { id -un 2>/dev/null || echo "${USER:-this user}"; }
# missing_shared: the shared files this host lacks, as "missing" lines.
missing_shared() {
	[ -n "$SHARED" ] && [ "$MODE" != inplace ] || return 0
	printf '%s\n' "$SHARED" | while IFS= read -r s; do
		case $s in '' | */) continue ;; esac
		[ -e "$P/shared/$s" ] || say missing "$s"
	done
}

# The first line gitric reads: what the login shell printed before it
# (without a newline, even) stays on a line of its own.
printf '\n'
say hello 2

# ---- prelude: the layout, resolved once for every action ----------------
# A relative path is relative to the home of the user the script runs as
# (under Stage.Sudo, that user's).
command -v git >/dev/null 2>&1 || die nogit "git is not installed on this host, or not on the PATH of a non-interactive ssh login (install it, e.g. apt-get install git)"
case $P in /*) ;; *) cd 2>/dev/null || die path "cannot enter the home directory ${HOME:-?} of $(me), where the relative repository path $P starts" ;; esac
writes=1
case $ACTION in status | unlock | plan)
	writes=
	# Read-only: not even git's opportunistic index refresh.
	GIT_OPTIONAL_LOCKS=0
	export GIT_OPTIONAL_LOCKS
	;;
esac
# nothing: the report of a root with no deploy, for the read-only actions.
nothing() {
	if [ "$ACTION" = unlock ]; then say unlocked -; else
		say head none
		[ "$ACTION" != plan ] || missing_shared
		say ready
	fi
	exit 0
}
if [ ! -d "$P" ]; then
	[ -n "$writes" ] || nothing
	mkdir -p -- "$P" 2>/dev/null || die path "cannot create the repository path $P as $(me): permission denied or a file is in the way; create it with the right owner, or choose another path"
fi
cd -- "$P" 2>/dev/null || die path "cannot enter the repository path $P as $(me)"
P=$PWD
case $MODE in
inplace) GD=.git W=$P L=$P ;;
release) GD=repo W=$P/current L=$P/current ;;
bluegreen) GD=repo W=$P/next L=$P/live ;;
*) die proto "unknown mode $MODE" ;;
esac
R=$P/$GD G=$R/gitric
# L is what serves (status), W what a deploy changes.


headof() { git -C "$1" rev-parse -q --verify 'HEAD^{commit}' 2>/dev/null || echo none; }
# complete RELEASE: whether a release directory was fully checked out.
complete() { [ -f "$(git -C "$1" rev-parse --absolute-git-dir 2>/dev/null)/gitric-complete" ] 2>/dev/null; }


# A root is gitric's when it has the gitric directory; an empty directory
# becomes one; anything else is refused before anything is written.
if [ ! -d "$G" ]; then
	if [ -z "$writes" ]; then
		if [ -f "$R/HEAD" ]; then
			say foreign "$R"
		elif [ "$ACTION" = plan ] && [ -n "$(ls -A 2>/dev/null)" ]; then
			say notempty "$P"
		fi
		nothing
	fi
	if [ -f "$R/HEAD" ]; then
		[ "$ADOPT" = 1 ] || die foreign "$R is a git repository that gitric did not create (it has no $GD/gitric directory); gitric will not take it over unless told to"
	else
		for f in * .[!.]* ..?*; do
			[ -e "$f" ] || [ -L "$f" ] || continue
			[ "$f" = "$GD" ] && continue
			# The shared files a stage asks for exist before its first deploy.
			[ "$f" = shared ] && [ "$MODE" != inplace ] && continue
			die notempty "the repository path $P is not empty and is not a gitric $MODE root; gitric will not take it over: empty it or choose another path"
		done
	fi
	[ -w . ] || die path "the repository path $P is not writable by $(me): give that user the directory, or choose another path"
	mkdir -p "$G" 2>/dev/null || die path "cannot create $G as $(me)"
fi

# ---- the lock: a symlink, made in one syscall, naming its holder ---------
# bootid: sets boot_id to this boot's, once. Linux's is read with read (no
# process to start: this runs on every deploy); BSD and macOS have a boot
# time instead.
boot_id=
bootid() {
	[ -z "$boot_id" ] || return 0
	if [ -r /proc/sys/kernel/random/boot_id ]; then
		IFS= read -r boot_id </proc/sys/kernel/random/boot_id || :
	else
		boot_id=$(sysctl -n kern.boottime 2>/dev/null | sed 's/[^0-9]//g')
	fi
}
lockowner() { readlink "$G/lock" 2>/dev/null || cat "$G/lock/owner" 2>/dev/null || echo 'an unknown deploy'; }
# stale OWNER: the holder's process is gone, or the host rebooted since.
stale() {
	case $1 in "pid="*" boot="*) ;; *) return 1 ;; esac
	pid=${1#pid=} pid=${pid%% *}
	boot=${1#* boot=} boot=${boot%% *}
	bootid
	[ -n "$boot" ] && [ "$boot" != "$boot_id" ] && return 0
	kill -0 "$pid" 2>/dev/null && return 1
	ps -p "$pid" >/dev/null 2>&1 && return 1
	return 0
}
locked= mine=
lock() {
	bootid
	info="pid=$$ boot=$boot_id $LOCK"
	# A lock that cannot be made is not someone else's lock.
	[ -w "$G" ] || die path "cannot take the deploy lock in $G as $(me): the directory is not writable by that user; give it to that user (chown -R $(me) $P), or deploy as its owner"
	waited=0
	while :; do
		# A directory is the lock of an older gitric (ln would link inside it).
		if ! { [ -d "$G/lock" ] && [ ! -L "$G/lock" ]; } && ln -s -- "$info" "$G/lock" 2>/dev/null; then
			mine=$info
			trap unlock_mine EXIT
			trap 'exit 1' HUP INT TERM
			return 0
		fi
		if [ ! -e "$G/lock" ] && [ ! -L "$G/lock" ]; then
			# No lock there, and ln could not make one: not somebody's
			# lock (unless it was let go in between: tried three times).
			nolock=$((${nolock:-0} + 1))
			[ "$nolock" -ge 3 ] || continue
			die path "cannot create the deploy lock $G/lock as $(me): is the disk full, or out of inodes? (df -h -i $G)"
		fi
		owner=$(lockowner)
		# The takeover guard is held for a moment only: one still there
		# after three tries was left by a taker that died; clear it.
		if stale "$owner" && [ -d "$G/lock.takeover" ]; then
			guarded=$((${guarded:-0} + 1))
			[ "$guarded" -lt 3 ] || { rmdir "$G/lock.takeover" 2>/dev/null; guarded=0; }
			sleep 1
			continue
		fi
		if stale "$owner" && mkdir "$G/lock.takeover" 2>/dev/null; then
			# One taker at a time; the owner must still be the dead one.
			if [ "$(lockowner)" = "$owner" ]; then
				rm -f "$G/lock"
				say tookover "$owner"
			fi
			rmdir "$G/lock.takeover"
			continue
		fi
		if [ "$waited" -lt "$LOCKWAIT" ]; then
			[ "$waited" -gt 0 ] || printf 'gitric: locked by %s; waiting up to %ss\n' "${owner#pid=* boot=* }" "$LOCKWAIT" >&2
			sleep 1
			waited=$((waited + 1))
			continue
		fi
		locked=1
		say locked "$owner"
		return 1
	done
}
unlock_mine() { [ -z "$mine" ] || [ "$(readlink "$G/lock" 2>/dev/null)" != "$mine" ] || rm -f "$G/lock"; }

if [ "$ACTION" = unlock ]; then
	if [ -e "$G/lock" ] || [ -L "$G/lock" ]; then
		say unlocked "$(lockowner)"
		rm -rf "$G/lock"
	else
		say unlocked -
	fi
	exit 0
fi

if [ -n "$writes" ] && [ -n "$LOCK" ]; then
	lock || true
fi
if [ -z "$locked" ] && [ -n "$writes" ] && [ ! -f "$R/HEAD" ]; then
	# Created under the lock, so two first deploys cannot both init.
	case $MODE in
	inplace) { git -c init.defaultBranch=main init -q . && git config receive.denyCurrentBranch ignore; } >&2 || die init "git init failed in $P" ;;
	*) git -c init.defaultBranch=main init -q --bare "$R" >&2 || die init "git init failed in $R" ;;
	esac
fi
# The service commands' output goes to $G/log, which stays private (it
# may hold a secret): made so, and made so again by every run with a
# command to run there. A run without one starts no process for it.
if [ -n "$writes" ] && [ -z "$locked" ]; then
	{ [ -d "$G/log" ] || mkdir -p -m 700 "$G/log"; } 2>/dev/null && [ -w "$G/log" ] || die path "cannot write in $G as $(me)"
	[ -z "$STOP$START$CHECK$BUILD$ONCE" ] || chmod 700 "$G/log" 2>/dev/null || die path "cannot write in $G as $(me)"
fi

# status shows any lock; plan only one a deploy would wait for or be
# refused by (the lock of a deploy that is gone would be taken over).
if [ "$ACTION" = status ] || [ "$ACTION" = plan ]; then
	if [ -L "$G/lock" ] || [ -e "$G/lock" ]; then
		owner=$(lockowner)
		[ "$ACTION" = plan ] && stale "$owner" || say locked "$owner"
	fi
fi
# A cutover marks its start in $G/cutover and empties it when it ends,
# however it ends; one that was killed (SIGKILL, a crash, the power) left
# its commit there: the working copy and the service may be between the
# two commits, which the edits below and the host's head then show.
# Its marker is read by the run that holds the lock, or by a read-only
# one when no live deploy holds it (one mid-cutover has a marker too).
cut=
if [ -s "$G/cutover" ]; then
	if [ -n "$writes" ]; then
		[ -n "$locked" ] || cut=1
	elif ! [ -L "$G/lock" ] || stale "$(lockowner)"; then
		cut=1
	fi
fi
if [ -n "$cut" ]; then
	IFS= read -r cut 2>/dev/null <"$G/cutover" || :
	case $cut in *[!0-9a-f]* | '') cut=unknown ;; esac
	say cutshort "$cut"
fi
if [ "$AUDITLOG" = 1 ] && [ -f "$G/audit.log" ]; then
	tail -n 200 "$G/audit.log" | while IFS= read -r line; do say audit "$line"; done
fi
# rebind DIR: after DIR, a working copy, was renamed, git's record of it
# (which git worktree prune goes by) and its submodules follow it.
rebind() {
	[ -f "$P/$1/.git" ] && a=$(git -C "$P/$1" rev-parse --absolute-git-dir 2>/dev/null) || return 0
	[ "$(cat "$a/gitdir" 2>/dev/null)" = "$P/$1/.git" ] && return 0
	rewire "$P/$1" "$a"
	printf '%s\n' "$P/$1/.git" >"$a/gitdir"
}
# rewire DIR GITDIR: the core.worktree of DIR's submodules (see subtree).
rewire() {
	[ -d "$2/modules" ] || return 0
	git -C "$1" ls-tree -r HEAD | while read -r mode type sha path; do
		[ "$mode" = 160000 ] && [ -f "$1/$path/.git" ] || continue
		gd=$(sed -n 's/^gitdir: //p' "$1/$path/.git")
		git config -f "$gd/config" core.worktree "$1/$path" && rewire "$1/$path" "$gd"
	done
}
# swaplink NAME TARGET: point the symlink NAME at TARGET with one rename(2),
# so that NAME always resolves to the old or the new target, never nothing.
# mv -T (GNU, busybox) and mv -h (BSD, macOS) rename over the link itself.
swaplink() {
	ln -sfn "$2" "$1.gitric-new" || return 1
	mv -fT "$1.gitric-new" "$1" 2>/dev/null || mv -fh "$1.gitric-new" "$1"
}
# A blue/green cutover that stopped between its two renames left next's
# colour missing, moved aside: it goes back before anything looks at next
# (its commit, its edits); tidy removes the rest of what it left. A swap
# that stopped between its two links left live and next on one colour,
# where a deploy to next would stop what serves: the swap is finished
# (live is what serves; next becomes the other colour).
if [ "$MODE" = bluegreen ] && [ -n "$writes" ] && [ -z "$locked" ]; then
	for c in blue green; do
		[ -e "$c" ] || [ ! -d "$c.gitric-old" ] || { mv "$c.gitric-old" "$c" && rebind "$c"; }
	done
	if [ -L live ] && [ -L next ] && [ live -ef next ] 2>/dev/null; then
		c=$(readlink live) o=blue
		c=${c##*/}
		[ "$c" != blue ] || o=green
		[ ! -d "$o" ] || ! swaplink next "$o" || printf 'gitric: live and next were both %s (a swap stopped halfway): next is %s again\n' "$c" "$o" >&2
	fi
fi
# The commit that serves (status) or that a deploy changes: its hash,
# tree, time, author and subject, in one git call, split by parameter
# expansion: no process, and no here-document (which some shells write
# to a temporary file: on a full disk the host would look empty). A deploy commit of gitric's (artifacts,
# a subdirectory) names the source commit it was made of, in its subject
# ("gitric deploy of SHA", and " Subdir: DIR" joined to it): gitric speaks
# of that one. log.showSignature would put gpg's lines first.
head=none hinfo= dir=$W untracked_any=?
[ "$ACTION" != status ] || dir=$L
if [ -d "$dir" ]; then
	hinfo=$(git -C "$dir" -c log.showSignature=false --no-pager log -1 --format='%H %T %ct %an%n%s' HEAD 2>/dev/null) || hinfo=
elif [ -d "$L" ]; then
	# No working copy to change, but one that serves: its commit only.
	head=$(headof "$L")
fi
nl='
'
if [ -n "$hinfo" ]; then
	subject= f=${hinfo%%"$nl"*}
	case $hinfo in *"$nl"*) subject=${hinfo#*"$nl"} ;; esac
	head=${f%% *} f=${f#* }
	htree=${f%% *} f=${f#* }
	ctime=${f%% *} author=${f#* }
fi
say head "$head"
if [ -n "$hinfo" ]; then
	src=
	if [ "$author" = gitric ]; then
		case $subject in "gitric deploy of "*)
			src=${subject#"gitric deploy of "} src=${src%% *}
			case ${subject#"gitric deploy of $src"} in '' | " Subdir: "*) ;; *) src= ;; esac
			case $src in *[!0-9a-f]*) src= ;; esac
			[ ${#src} -eq 40 ] || src=
			;;
		esac
	fi
	[ -z "$src" ] || say source "$src" "$htree"
	[ "$ACTION" != status ] || say commit "$ctime $subject"
	# The edits on the host: a look only, in every action, so that a
	# refused deploy leaves even the index's stat data as it was (git
	# status would refresh it). In the actions that change things, but in
	# release mode, the same walk lists the untracked files, after the
	# tracked changes: the first "??" line ends the changes and tells the
	# untracked check (report_untracked) that it has something to look
	# at. untracked_any: 1 yes, 0 none, ? not known.
	uflag=no
	[ -z "$writes" ] || [ "$MODE" = release ] || uflag=normal
	changes=$(GIT_OPTIONAL_LOCKS=0 git -C "$dir" status --porcelain --untracked-files=$uflag 2>/dev/null)
	n=0
	while [ -n "$changes" ] && [ $n -lt 20 ]; do
		case $changes in '?? '*) break ;; esac
		n=$((n + 1))
		say changed "${changes%%"$nl"*}"
		case $changes in *"$nl"*) changes=${changes#*"$nl"} ;; *) changes= ;; esac
	done
	case $uflag:$changes in normal:) untracked_any=0 ;; 'normal:?? '*) untracked_any=1 ;; esac
fi
if [ "$MODE" = release ] && [ "$AUDITLOG" = 1 ]; then
	for d in releases/*/; do
		[ -d "$d" ] || continue
		d=${d%/}
		complete "$d" && say release "$d" "$(headof "$d")"
	done
fi
if [ "$ACTION" = plan ]; then
	# What a deploy would overwrite is worked out by gitric, which has the
	# new commit: here, the untracked files and the missing shared ones.
	[ "$head" = none ] || [ "$MODE" = release ] || git -C "$W" ls-files --others --exclude-standard 2>/dev/null | head -n 2000 | while IFS= read -r f; do say untracked "$f"; done
	missing_shared
fi
say ready
[ "$ACTION" != status ] && [ "$ACTION" != plan ] || exit 0

# ---- helpers for the steps that change things ---------------------------
# audit RESULT REASON [MS]: one line in the host's own audit log, written
# here at the moment it happens, so the log holds even if gitric is gone.
audit() {
	sep=,
	[ "$AUD" != "{" ] || sep=
	printf '%s%s"time":"%s","result":"%s","reason":"%s","downtime_ms":%s}\n' "$AUD" "$sep" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" "$2" "${3:-0}" 2>/dev/null >>"$G/audit.log" ||
		printf 'gitric: could not add to %s (is the disk full?): this step is missing from it\n' "$G/audit.log" >&2
}
# clock: sets now to a time in milliseconds, for the downtime: Linux's
# uptime (centiseconds), read with read, as no process may start around
# the downtime that need not; date elsewhere.
clock() {
	now= up_s= up_cs=
	[ ! -r /proc/uptime ] || IFS=' .' read -r up_s up_cs _ 2>/dev/null </proc/uptime || up_s=
	up_cs=${up_cs#0}
	case $up_s$up_cs in *[!0-9]* | '') ;; *) now=$((up_s * 1000 + up_cs * 10)) ;; esac
	[ -z "$now" ] || return 0
	now=$(date +%s%N 2>/dev/null)
	case $now in *[!0-9]* | '') now=$(($(date +%s) * 1000)) ;; *) now=$((now / 1000000)) ;; esac
}

# untracked DIR FROM TO: the untracked files in DIR that checking TO out
# over FROM would overwrite or delete (a file TO adds, a directory where TO
# has a file, a file where TO has a directory). Ignored files are not
# listed: like git, gitric treats them as expendable.
# In blue/green with a Build, a deploy replaces next's directory: then
# every untracked file in it (but the build's own outputs, which
# ignore_built marks as ignored) would be lost.
untracked() {
	if [ "$MODE" = bluegreen ] && [ -n "$BUILD" ]; then
		[ "$2" = none ] || git -C "$1" -c core.quotepath=off ls-files -o --exclude-standard 2>/dev/null | head -n 50
	else conflicts "$@" | head -n 50; fi
}
# conflicts DIR FROM TO: all of them. Paths as git writes them, without
# quoting but for control characters, quotes and backslashes.
conflicts() {
	[ "$2" != none ] || return 0
	{
		git -C "$1" -c core.quotepath=off ls-files --others --exclude-standard 2>/dev/null | sed 's/^/U /'
		git -C "$1" -c core.quotepath=off diff --name-only --no-renames --diff-filter=AT "$2" "$3" 2>/dev/null | sed 's/^/A /'
	} | awk '
		/^U / { u[substr($0, 3)] = 1; next }
		/^A / { a[substr($0, 3)] = 1 }
		END {
			for (p in a) {
				if (p in u) { print p; continue }
				for (f in u) {
					if (index(f, p "/") == 1 || index(p, f "/") == 1) print f
				}
			}
		}' | sort -u
}
# report_untracked DIR FROM TO: says them. A working copy without an
# untracked file, the usual case, has none to lose: the prelude's git
# status said so, or one git call does, which --directory keeps short (an
# untracked directory is a line).
report_untracked() {
	[ "$2" != none ] && [ "$untracked_any" != 0 ] || return 0
	[ "$untracked_any" = 1 ] || [ -n "$(git -C "$1" ls-files --others --exclude-standard --directory --no-empty-directory 2>/dev/null)" ] || return 0
	untracked "$@" | while IFS= read -r f; do say untracked "$f"; done
}

# tree PID: PID and every process under it.
tree() {
	ps -A -o pid= -o ppid= 2>/dev/null | awk -v r="$1" '
		{ parent[$1] = $2 }
		END {
			n = 1; l[1] = r
			for (i = 1; i <= n; i++) for (c in parent) if (parent[c] == l[i]) l[++n] = c
			for (i = 1; i <= n; i++) printf "%s ", l[i]
		}'
}
# killtree PID: TERM, then KILL, for PID and every process under it. The
# tree is stopped first, listing after listing, so that it cannot grow
# between the listing and the kill (a child forked meanwhile shows in the
# next listing, and a stopped process forks nothing).
killtree() {
	all=
	for round in 1 2 3 4 5 6 7 8; do
		new=
		for p in $(tree "$1"); do
			case " $all " in *" $p "*) ;; *) new="$new $p" ;; esac
		done
		[ -n "$new" ] || break
		kill -STOP $new 2>/dev/null
		all="$all$new"
	done
	[ -n "$all" ] || all=$1
	# Children first, PID last: its end is what runcmd waits for.
	rev=
	for p in $all; do rev="$p $rev"; done
	kill -TERM $rev 2>/dev/null
	kill -CONT $rev 2>/dev/null
	sleep 1
	kill -KILL $rev 2>/dev/null
}

# runcmd NAME CMD SECS DIR [COLOR]: a service command in DIR with its own
# descriptors, killed (with what it started) after SECS seconds. Returns
# its status, or 124 when it was killed at its timeout.
runcmd() {
	out=$G/log/$1.out
	rm -f "$out" "$out.timeout"
	(cd "$4" && svcenv && { [ -z "${5:-}" ] || colorenv "$5"; } && eval "$2") >"$out" 2>&1 </dev/null &
	pid=$!
	(
		i=0
		while kill -0 "$pid" 2>/dev/null; do
			if [ "$i" -ge "$3" ]; then
				: >"$out.timeout"
				killtree "$pid"
				exit 0
			fi
			sleep 1
			i=$((i + 1))
		done
	) >/dev/null 2>&1 </dev/null &
	wd=$!
	# A trapped signal ends wait early: wait again while it runs.
	while :; do
		wait "$pid"
		st=$?
		kill -0 "$pid" 2>/dev/null || break
	done
	# A watchdog that is killing the tree finishes (its TERM, CONT and
	# KILL reach every process); an idle one is ended.
	if [ -f "$out.timeout" ]; then
		while kill -0 "$wd" 2>/dev/null; do wait "$wd"; done
	else
		kill "$wd" 2>/dev/null
	fi
	# A build says little unless it fails: then its last lines.
	case $1 in
	build | once) [ "$st" -eq 0 ] || tail -n 40 "$out" >&2 2>/dev/null ;;
	check) ;; # check shows its last attempt's, then removes it
	*) cat "$out" >&2 2>/dev/null ;;
	esac
	# What a command printed may hold a secret: it is not kept.
	[ "$1" = check ] || rm -f "$out"
	if [ -f "$out.timeout" ]; then
		rm -f "$out.timeout"
		printf 'gitric: the %s command did not finish within %ss and was killed\n' "$1" "$3" >&2
		return 124
	fi
	return "$st"
}
# status word of a command's exit: its number, or t for a timeout.
word() { if [ "$1" -eq 124 ] && [ "${2:-}" = t ]; then echo t; else echo "$1"; fi; }

# submodules DIR: check out the submodules DIR's commit records, at the
# commits it records, recursively. Their repositories borrow the objects
# the push put in $R, so nothing is ever fetched.
submodules() {
	[ "$SUBMODULES" = 1 ] || return 0
	subtree "$1" "$(git -C "$1" rev-parse --absolute-git-dir)"
}
# subtree WORKTREE GITDIR
subtree() {
	[ -f "$1/.gitmodules" ] || return 0
	git -C "$1" ls-tree -r HEAD | while read -r mode type sha path; do
		[ "$mode" = 160000 ] || continue
		name=$(git -C "$1" config -f .gitmodules --get-regexp '^submodule\..*\.path$' | while read -r key p; do
			if [ "$p" = "$path" ]; then
				key=${key#submodule.}
				printf '%s\n' "${key%.path}"
				break
			fi
		done)
		[ -n "$name" ] || { echo "gitric: $1/$path: no .gitmodules entry" >&2; return 1; }
		gd=$2/modules/$name
		if [ ! -f "$gd/HEAD" ]; then
			mkdir -p "$gd" && git --git-dir="$gd" init -q && git --git-dir="$gd" config core.bare false || return 1
		fi
		mkdir -p "$gd/objects/info" "$1/$path" || return 1
		printf '%s\n' "$R/objects" >"$gd/objects/info/alternates"
		git --git-dir="$gd" config core.worktree "$1/$path"
		printf 'gitdir: %s\n' "$gd" >"$1/$path/.git"
		git -C "$1/$path" reset -q --hard "$sha" || return 1
		echo "submodule $path is now at $(printf %.7s "$sha")"
		subtree "$1/$path" "$gd" || return 1
	done
}

# checkout DIR COMMIT: reset DIR's working copy (and submodules) to COMMIT.
checkout() { git -C "$1" reset --hard "$2" >&2 </dev/null && submodules "$1" >&2 </dev/null; }

# check STATUS DIR [COLOR]: the health check, each attempt bounded by the
# time left. Says checked 0 (passed), 1 (failed), t (timed out) or -.
check() {
	c=-
	if [ -n "$CHECK" ] && [ "$1" = 0 ]; then
		end=$(($(date +%s) + CHECKWAIT))
		while :; do
			left=$((end - $(date +%s)))
			[ "$left" -ge 1 ] || left=1
			runcmd check "$CHECK" "$left" "$2" "${3:-}" 2>/dev/null
			r=$?
			[ "$r" -ne 0 ] || { c=0; rm -f "$G/log/check.out"; break; }
			if [ "$(date +%s)" -ge "$end" ]; then
				c=1
				[ "$r" -ne 124 ] || c=t
				cat "$G/log/check.out" >&2 2>/dev/null
				rm -f "$G/log/check.out"
				printf 'gitric: the health check did not pass within %ss\n' "$CHECKWAIT" >&2
				break
			fi
			sleep 1
		done
	fi
	if [ "$HTTPCHECK" = 1 ] && [ "$1" = 0 ] && [ "$c" != 1 ] && [ "$c" != t ]; then
		# gitric requests the URL itself, through the connection.
		say checkhttp
		IFS= read -r v || v=
		case $v in "$T http 0") c=0 ;; *) c=1 ;; esac
	fi
	say checked $c
	[ "$c" = 0 ] || [ "$c" = - ]
}


# ---- the cutover of each mode --------------------------------------------
# Every cutover says stopping, stopped S, reset S, built S, started S and
# checked S (in that order, but with Overlap: built, started, checked,
# reset, stopping, stopped) and writes its audit line. stopped: 0, -
# (nothing to stop), p (the new tree could not be prepared; nothing was
# stopped), or the stop command's status (t: killed at its timeout; the
# service is then started again on the old tree). reset: 0 (on the new
# commit), f (failed and put back on the old one), x (failed and could not
# be put back: the service is not started), - (not tried).

# finish OKWORD STATUS REASON: the audit line of a cutover.
finish() {
	clock
	ms=$((now - t0))
	[ "$OVERLAP" != 1 ] || [ "$MODE" != release ] || ms=0
	if [ "$2" = 0 ]; then audit "$1" "" "$ms"; else audit failed "$3" "$ms"; fi
}

# unprepared REASON: the new tree could not be made; nothing was stopped.
unprepared() {
	say stopping
	say stopped p
	say reset -
	say built -
	say started -
	say checked -
	finish "$okword" 1 "$1"
}

# stop DIR [COLOR]: the stop command; on failure, start the old tree again.
stop_service() {
	say stopping
	clock
	t0=$now
	if [ -z "$STOP" ] || [ "$prev" = none ]; then
		say stopped -
		return 0
	fi
	runcmd stop "$STOP" "$STOPWAIT" "$1" "${2:-}"
	s=$?
	say stopped "$(word $s t)"
	[ $s -ne 0 ] || return 0
	s2=-
	if [ -n "$START" ]; then
		runcmd start "$START" "$STARTWAIT" "$1" "${2:-}"
		s2=$(word $? t)
	fi
	say reset -
	say built -
	say started "$s2"
	say checked -
	r="the stop command failed (exit status $s)"
	[ $s -ne 124 ] || r="the stop command timed out after ${STOPWAIT}s"
	finish "$okword" 1 "$r"
	return 1
}

# switch_tree DIR NEW: move a working copy; put it back if that fails.
# What a failed checkout wrote of the files NEW adds goes first (the
# untracked check let none be there before): on a full disk, that is
# the room the way back needs.
switch_tree() {
	if checkout "$1" "$2" && link_shared "$1"; then
		say reset 0
		return 0
	fi
	[ "$prev" = none ] || conflicts "$1" "$prev" "$2" | while IFS= read -r f; do rm -f -- "$1/$f"; done
	if [ "$prev" != none ] && checkout "$1" "$prev" && link_shared "$1"; then
		printf 'gitric: could not check %s out; the working copy is back on %.7s\n' "$2" "$prev" >&2
		say reset f
		return 1
	fi
	printf 'gitric: could not check %s out, nor put the old commit back: the working copy is mixed; the service was not started\n' "$2" >&2
	say reset x
	return 2
}

# build_in DIR [COLOR]: the stage's build, if any. Says built S.
build_in() {
	if [ -z "$BUILD" ]; then
		say built -
		return 0
	fi
	runcmd build "$BUILD" "$BUILDWAIT" "$1" "${2:-}"
	b=$?
	say built "$(word $b t)"
	return $b
}

# start_and_check DIR RESET [COLOR]: build (in place; the other modes
# built in phase one), start (unless the tree is mixed), check.
start_and_check() {
	b=0
	if [ "$2" -eq 0 ] && [ "$MODE" = inplace ]; then
		build_in "$1" "${3:-}"
		b=$?
	else
		say built -
	fi
	s=-
	if [ "$2" -ne 2 ] && [ -n "$START" ]; then
		runcmd start "$START" "$STARTWAIT" "$1" "${3:-}"
		s=$?
		say started "$(word $s t)"
	else
		say started -
	fi
	st=0
	[ "$s" = - ] || st=$s
	check "$((st + $2 + b))" "$1" "${3:-}"
	c=$?
	case $2 in
	1) finish "$okword" 1 "the checkout failed; back on the old commit" ;;
	2) finish "$okword" 1 "the checkout failed and the working copy is mixed; the service was not started" ;;
	*) if [ "$b" -ne 0 ]; then
		finish "$okword" 1 "the build failed (exit status $b)"
	elif [ "$st" -eq 124 ]; then
		finish "$okword" 1 "the start command timed out after ${STARTWAIT}s"
	elif [ "$st" -ne 0 ]; then
		finish "$okword" 1 "the start command failed (exit status $st)"
	elif [ $c -ne 0 ]; then
		finish "$okword" 1 "the health check did not pass"
	else
		finish "$okword" 0 ""
	fi ;;
	esac
}

# refresh DIR: bring the index's file stats up to date before the stop,
# so that the switch inside the downtime does not read every file again.
# With no stop command there is no downtime to shorten, and git reset does
# the same refresh itself: one process less.
refresh() {
	[ -n "$STOP" ] || return 0
	git -C "$1" update-index -q --refresh >/dev/null 2>&1 </dev/null || true
}

# headnow: sets h to the commit the working copy in $P is on, as headof
# says it, read from git's own files where they are plain (HEAD detached,
# or naming a branch whose ref is a file): no process; git's answer
# otherwise (a packed ref, another ref backend).
headnow() {
	h=
	IFS= read -r h 2>/dev/null <"$R/HEAD" || h=
	case $h in
	"ref: refs/"*)
		h=${h#ref: }
		case $h in *..* | *[!-A-Za-z0-9_./]*) h= ;; *) [ -f "$R/$h" ] && IFS= read -r h 2>/dev/null <"$R/$h" || h= ;; esac
		;;
	esac
	case $h in *[!0-9a-f]* | '') h= ;; esac
	[ ${#h} -eq 40 ] || [ ${#h} -eq 64 ] || h=$(headof "$P")
}

cutover_inplace() {
	headnow
	prev=$h
	refresh "$P"
	stop_service . || return 0
	switch_tree "$P" "$1"
	start_and_check . $?
}

# link_shared DIR: link the stage's shared paths into a release or colour.
link_shared() {
	[ -n "$SHARED" ] && [ "$MODE" != inplace ] || return 0
	printf '%s\n' "$SHARED" | while IFS= read -r s; do
		[ -n "$s" ] || continue
		t=${s%/}
		if [ "$t" != "$s" ]; then
			mkdir -p "$P/shared/$t" || return 1
		elif [ ! -e "$P/shared/$t" ]; then
			printf 'gitric: the shared file %s is missing on this host: create %s first\n' "$t" "$P/shared/$t" >&2
			return 1
		fi
		[ "$(readlink "$1/$t" 2>/dev/null)" != "$P/shared/$t" ] || continue
		if [ -n "$(git -C "$1" ls-files -- "$t" 2>/dev/null)" ]; then
			printf 'gitric: warning: %s is tracked in the commit; the link to shared/%s replaces it\n' "$t" "$t" >&2
			git -C "$1" ls-files -z -- "$t" | tr '\0' '\n' | while IFS= read -r f; do
				git -C "$1" update-index --skip-worktree -- "$f"
			done
		fi
		grep -qxF "/$t" "$R/info/exclude" 2>/dev/null || { mkdir -p "$R/info" && printf '/%s\n' "$t" >>"$R/info/exclude"; }
		rm -rf "${1:?}/$t" && mkdir -p "$(dirname "$1/$t")" && ln -s "$P/shared/$t" "$1/$t" || return 1
	done
}


# The working copies of release and blue/green mode are git worktrees of $R.
wt() { git --git-dir="$R" worktree "$@"; }
# subj DIR [COMMIT]: a commit (HEAD) of DIR, as its short hash and subject.
subj() { git -C "$1" --no-pager log -1 --format='%h %s' "${2:-HEAD}"; }
prune() { wt prune 2>/dev/null; }
# newtree DIR COMMIT: a new working copy of COMMIT (sharing the objects),
# its submodules checked out and the shared paths linked.
newtree() {
	{ wt add -q --detach "$P/$1" "$2" && submodules "$P/$1"; } >&2 </dev/null && link_shared "$P/$1" >&2
}
# drop DIR: remove a working copy (relative to $P) that nothing uses.
drop() {
	[ -e "$1" ] || return 0
	rebind "$1"
	wt remove --force "$1" >/dev/null 2>&1 || rm -rf "$1"
}

# prepare_release COMMIT [reuse]: the release of COMMIT, made while the
# service runs: a complete, clean one of this commit is reused, or a new
# one is checked out (sharing the objects), linked to the shared paths and
# built. A release that a crash left half-written is removed, never
# reused. Sets rel; says prepared 0 RELEASE, or prepared 1 (removed).
prepare_release() {
	# Named after the source commit (GITRIC_COMMIT), found by its HEAD.
	short=$(printf %.7s "${GITRIC_COMMIT:-$1}")
	rel=
	for d in releases/*-"$short"; do
		[ -d "$d" ] || continue
		if [ "$(headof "$d")" = "$1" ] && complete "$d" && [ -z "$(git -C "$d" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
			rel=$d
		elif [ "$(readlink current 2>/dev/null)" != "$d" ]; then
			drop "$d"
		fi
	done
	prune
	if [ -n "$rel" ]; then
		say built -
		say prepared 0 "$rel"
		return 0
	fi
	if [ "${2:-}" = reuse ]; then
		printf 'gitric: there is no release of %s on this host any more (pruned?)\n' "$short" >&2
		say built -
		say prepared 1
		return 1
	fi
	mkdir -p releases
	# Release names sort in the order they were made (pruning keeps the
	# newest by name): one made in the same second as the newest release
	# waits for the next second, or its hash would decide the order.
	last=$(ls -1d releases/*/ 2>/dev/null | sed 's#/$##; s#^releases/##; s#-.*##' | sort -r | head -n 1)
	stamp=$(date -u +%Y%m%dT%H%M%SZ) n=0
	while [ -n "$last" ] && [ "$n" -lt 2 ] && [ "$(printf '%s\n%s\n' "$stamp" "$last" | sort | tail -n 1)" = "$last" ]; do
		sleep 1
		stamp=$(date -u +%Y%m%dT%H%M%SZ) n=$((n + 1))
	done
	rel=releases/$stamp-$short
	if newtree "$rel" "$1" && build_in "$P/$rel" && mark "$rel"; then
		say prepared 0 "$rel"
		return 0
	fi
	discard_release "$rel"
	audit failed "the release of $short could not be checked out or built; the service was not stopped"
	say prepared 1
	return 1
}

# mark DIR: DIR is complete (see complete).
mark() { : >"$(git -C "$1" rev-parse --absolute-git-dir)/gitric-complete"; }

# discard_release RELEASE: remove a release that is not live.
discard_release() {
	[ -n "$1" ] && [ "$(readlink current 2>/dev/null)" != "$1" ] || return 0
	drop "$1"
	prune
}

cutover_release() {
	[ -n "$rel" ] && [ "$(headof "$rel")" = "$1" ] || {
		# Not prepared in phase one (a rollback): reuse, or make it now.
		if ! prepare_release "$1" reuse >/dev/null; then
			unprepared "there is no complete release of $1 on the host"
			return 0
		fi
	}
	prev=$(readlink current 2>/dev/null || echo none)
	clock
	t0=$now
	if [ "$OVERLAP" = 1 ] && [ "$prev" != none ]; then
		overlap_release
	else
		stop_service current || return 0
		if swaplink current "$rel"; then
			say reset 0
			r=0
		else
			say reset f
			r=1
		fi
		start_and_check current $r
	fi
	[ "$(readlink current)" != "$rel" ] || printf 'current is now %s: %s\n' "$rel" "$(subj current "${GITRIC_COMMIT:-HEAD}" 2>/dev/null || subj current)" >&2
	# Keep KEEP releases: always the live and previous ones, then the
	# newest; the oldest others go.
	extra=$(($(ls -1d releases/*/ 2>/dev/null | wc -l) - KEEP))
	[ "$extra" -le 0 ] || ls -1d releases/*/ 2>/dev/null | sed 's#/$##' | sort | while IFS= read -r old; do
		[ "$extra" -gt 0 ] || break
		[ "$old" = "$(readlink current)" ] || [ "$old" = "$prev" ] || [ "$old" = "${prev#"$P"/}" ] && continue
		drop "$old"
		extra=$((extra - 1))
	done
	prune
}

# overlap_release: start the new release next to the old one, check it,
# switch current, then stop the old one. The old one serves throughout;
# a new one that fails its start or check is stopped again.
overlap_release() {
	say built -
	s=0
	if [ -n "$START" ]; then
		runcmd start "$START" "$STARTWAIT" "$P/$rel"
		s=$?
	fi
	say started "$(word $s t)"
	check "$s" "$P/$rel"
	c=$?
	if [ "$s" -ne 0 ] || [ $c -ne 0 ]; then
		[ -z "$STOP" ] || runcmd stop "$STOP" "$STOPWAIT" "$P/$rel"
		say reset -
		say stopping
		say stopped -
		r="the health check did not pass"
		[ "$s" -eq 0 ] || r="the start command failed (exit status $s)"
		[ "$s" -ne 124 ] || r="the start command timed out after ${STARTWAIT}s"
		finish "$okword" 1 "$r; the old release kept serving"
		return 0
	fi
	if ! swaplink current "$rel"; then
		say reset f
		say stopping
		say stopped -
		finish "$okword" 1 "renaming current failed"
		return 0
	fi
	say reset 0
	say stopping
	s=-
	if [ -n "$STOP" ]; then
		runcmd stop "$STOP" "$STOPWAIT" "$P/$prev"
		s=$(word $? t)
	fi
	say stopped "$s"
	finish "$okword" 0 ""
}

# dropcolors: remove the blue and green working copies (none is live).
dropcolors() {
	drop blue
	drop green
	prune
}

nextis() { printf 'next (%s) is now at %s; live is %s\n' "$color" "$(subj next)" "$(basename "$(readlink live)")" >&2; }

cutover_bluegreen() {
	clock
	t0=$now
	if [ -n "$BUILD" ]; then
		cutover_built "$1"
		return
	fi
	tidy
	first=
	if [ ! -d next ] && [ -d live ]; then
		# A first deploy that stopped between its two links, or a next
		# whose colour is gone: next is the colour live is not, made if
		# it is missing.
		o=green
		[ "$(basename "$(readlink live)")" != green ] || o=blue
		if [ ! -d "$o" ] && ! newtree "$o" "$1"; then
			drop "$o"
			unprepared "the $o working copy could not be checked out; nothing was started"
			return 0
		fi
		swaplink next "$o"
	elif [ ! -L next ]; then
		first=1
		# First deploy: both colours start on this commit; blue is live.
		# Without live and next, blue and green are what an earlier first
		# deploy that failed (or crashed) left: nothing serves from them.
		dropcolors
		if ! { newtree blue "$1" && newtree green "$1"; }; then
			dropcolors
			unprepared "the blue and green working copies could not be checked out; nothing was started"
			return 0
		fi
		swaplink live blue && swaplink next green
	fi
	color=$(basename "$(readlink next)")
	prev=$(headof next)
	[ -z "$first" ] || prev=none
	refresh "$P/$color"
	stop_service next "$color" || return 0
	switch_tree "$P/$color" "$1"
	r=$?
	start_and_check next $r "$color"
	[ $r -ne 0 ] || nextis
}

# ---- blue/green with a Build ----------------------------------------------
# Phase one checks the new commit out beside next's colour C, as
# C.gitric-new, and builds it there while both colours run. The cutover
# stops next, moves C aside as C.gitric-old, renames C.gitric-new to C and
# starts it. C.gitric-old is kept while the new copy fails its start or
# check, for the rollback, which renames it back (no build); it goes when
# the session ends. A crash leaves at most these: the next run puts a
# missing C back from C.gitric-old and removes the others, never using one.

# tidy: what an earlier run (or this one) left beside the colours.
tidy() {
	for c in blue green; do
		[ -e "$c" ] || [ ! -d "$c.gitric-old" ] || mv "$c.gitric-old" "$c"
		rebind "$c"
		drop "$c.gitric-new"
		drop "$c.gitric-old"
	done
	prune
}

# ignore_built DIR: what the build wrote in DIR is expendable, like an
# ignored file: the untracked check of the next deploy passes over it.
ignore_built() {
	mkdir -p "$R/info" && git -C "$P/$1" -c core.quotepath=off ls-files -o --exclude-standard --directory | head -n 1000 |
		awk -v f="$R/info/exclude" 'BEGIN { while ((getline l <f) > 0) x[l] = 1 }
			/^"|[ \\]$/ { next }
			{ gsub(/[][*?\\]/, "\\\\&"); if (!(("/" $0) in x)) print "/" $0 }' >>"$R/info/exclude"
}

# prepare_bluegreen COMMIT: next's new copy, checked out, linked and built
# (with its colour's settings) while the old one runs; on a first deploy,
# blue (live) is checked out too. Sets rel; says prepared 0 DIR, or
# prepared 1 (nothing was left).
prepare_bluegreen() {
	tidy
	color=green
	if [ -L next ]; then
		color=$(basename "$(readlink next)")
	elif [ "$(readlink live 2>/dev/null)" = green ]; then
		color=blue
	fi
	rel=$color.gitric-new
	if { [ -L live ] || { dropcolors; newtree blue "$1"; }; } && newtree "$rel" "$1" && build_in "$P/$rel" "$color" && ignore_built "$rel" && mark "$rel"; then
		say prepared 0 "$rel"
		return 0
	fi
	discard_bluegreen
	audit failed "the new copy of next of $(printf %.7s "${GITRIC_COMMIT:-$1}") could not be checked out or built; the service was not stopped"
	say prepared 1
	return 1
}

# discard_bluegreen: the prepared copy goes unused (and on a first deploy,
# blue with it).
discard_bluegreen() {
	drop "$rel"
	[ -L live ] || dropcolors
	prune
	rel=
}

# cutover_built COMMIT: stop next, rename the copy of COMMIT in (the one
# prepared, or the one the cutover before moved aside), start, check.
cutover_built() {
	color=${rel%.gitric-new} src=$rel
	if [ -z "$rel" ] || [ "$(headof "$rel")" != "$1" ]; then
		# A rollback of the cutover before: the old copy comes back.
		color=$(basename "$(readlink next 2>/dev/null)")
		src=$color.gitric-old
		if [ "$(headof "$src")" != "$1" ]; then
			unprepared "there is no copy of $1 built for next on the host"
			return
		fi
	fi
	aside=$color.gitric-old
	[ "$src" != "$aside" ] || aside=$color.gitric-new
	rel=
	prev=none
	[ ! -L next ] || prev=$(headof next)
	stop_service next "$color" || return 0
	r=0
	drop "$aside"
	if [ -e "$color" ] && ! mv "$color" "$aside"; then
		r=1
	elif ! mv "$src" "$color"; then
		r=1
		[ ! -e "$aside" ] || mv "$aside" "$color" || r=2
	fi
	rebind "$color"
	rebind "$aside"
	# A first deploy: live is blue (checked out in phase one), next this.
	[ -L next ] || { { [ -L live ] || swaplink live blue; } && swaplink next "$color"; } || r=2
	case $r in 0) say reset 0 ;; 1) say reset f ;; *) say reset x ;; esac
	start_and_check next $r "$color"
	[ $r -ne 0 ] || nextis
}

# run_once COMMIT: the run-once command, in the prepared (and built)
# release or copy of next, or in a scratch checkout of COMMIT. Says onced S.
run_once() {
	dir=$P/$rel
	scratch=
	if [ "$MODE" = inplace ] || [ -z "$rel" ]; then
		scratch=$GD/gitric/once
		drop "$scratch"
		wt add -q --detach "$scratch" "$1" >&2 </dev/null || { say onced 1; return; }
		dir=$P/$scratch
	fi
	runcmd once "$ONCE" "$ONCEWAIT" "$dir"
	o=$?
	[ -z "$scratch" ] || { drop "$scratch"; prune; }
	say onced "$(word $o t)"
}

swap_bluegreen() {
	[ -L live ] && [ -L next ] || die proto "$P has no blue/green deploy to swap yet"
	clock
	t0=$now
	l=$(readlink live) n=$(readlink next)
	swaplink live "$n" && swaplink next "$l"
	r=$?
	printf 'live is now %s (%s), next is %s\n' "$(basename "$n")" "$(subj live)" "$(basename "$l")" >&2
	finish ok $r "renaming the live and next symlinks failed"
	say swapped $r
}

# ---- the seed -------------------------------------------------------------
# autogc: git gc --auto, which git receive-pack would start after every
# push, started here only when git's default limits may have been passed
# (over 27 loose objects in objects/17, as gc.auto 6700 counts them, or
# over 50 packs): counting takes no process, and git then decides by the
# repository's own settings; receive.autogc=false is honoured. A gc.auto
# below git's default waits for those limits.
autogc() {
	set -- "$R"/objects/17/*
	if ! { [ -e "$1" ] && [ $# -gt 27 ]; }; then
		set -- "$R"/objects/pack/*.pack
		[ -e "$1" ] && [ $# -gt 50 ] || return 0
	fi
	[ "$(git --git-dir="$R" config --type=bool receive.autogc 2>/dev/null)" != false ] || return 0
	git --git-dir="$R" gc --auto --quiet </dev/null >&2
}
# git receive-pack reads the push from gitric; afterwards seeded says its
# exit status and what refs/gitric/seed holds. A push git refused is in
# the audit log, and nothing after it is read as a command: the unread
# part of a pack is not gitric's to interpret.
if [ -z "$locked" ] && [ "$ACTION" = deploy ]; then
	git -c receive.autogc=false receive-pack "$GD"
	rc=$?
	# What the ref holds: its file, as receive-pack just wrote it, read
	# with read (no process); git's answer where the ref is not a file of
	# a commit's hash (packed, or another ref backend).
	seed=
	[ ! -f "$R/refs/gitric/seed" ] || IFS= read -r seed <"$R/refs/gitric/seed" || seed=
	case $seed in *[!0-9a-f]* | '') seed= ;; esac
	[ ${#seed} -eq 40 ] || [ ${#seed} -eq 64 ] || seed=$(git --git-dir="$R" rev-parse -q --verify 'refs/gitric/seed^{commit}' 2>/dev/null || echo none)
	if [ "$rc" -ne 0 ]; then
		say seeded "$rc" "$seed"
		audit failed "git receive-pack failed (exit status $rc)"
		exit 1
	fi
	autogc
	say seeded "$rc" "$seed"
	if [ "$seed" = "$NEW" ] && [ "$MODE" != release ]; then
		report_untracked "$W" "$head" "$NEW"
	fi
	missing_shared
	say verified
fi
rel=

# srccommit SOURCE CHECKOUT: GITRIC_COMMIT for the commands of a step is
# the source commit the step puts in place (a rollback's: the old one),
# also when the host checks out gitric's deploy commit of it.
srccommit() {
	case $1 in *[!0-9a-f]* | '') GITRIC_COMMIT=$2 ;; *) GITRIC_COMMIT=$1 ;; esac
	export GITRIC_COMMIT
}

# ---- commands from gitric: "$T word args" lines ---------------------------
while IFS= read -r line; do
	case $line in "$T "*) ;; *) die proto "unexpected input on the script's stdin" ;; esac
	# "$T cmd [arg [okword [rest]]]", split by hand: nothing is globbed.
	rest=${line#"$T "}
	cmd=${rest%% *} rest=${rest#"$cmd"} rest=${rest# }
	arg=${rest%% *} rest=${rest#"$arg"} rest=${rest# }
	okword=${rest%% *} rest=${rest#"$okword"} rest=${rest# }
	# A step that ran the stage's commands or changed a working copy may
	# have left untracked files: the prelude's word on them is gone then.
	case $cmd in
	verify)
		# The untracked files a rollback to $arg would lose.
		case $arg in *[!0-9a-f]* | '') die proto "bad commit '$arg'" ;; esac
		[ "$MODE" = release ] || report_untracked "$W" "$head" "$arg"
		missing_shared
		say verified
		;;
	prepare)
		# Phase one of release mode (and of blue/green with a Build): the
		# new tree, built, before any stop. A signal lets the build end.
		[ -z "$locked" ] || die proto "prepare without the lock"
		case $arg in *[!0-9a-f]* | '') die proto "bad commit '$arg'" ;; esac
		srccommit "$rest" "$arg"
		trap : HUP INT TERM
		"prepare_$MODE" "$arg" "$okword"
		trap 'exit 1' HUP INT TERM
		untracked_any=?
		;;
	discard)
		# Another host failed: the tree prepared here goes unused.
		"discard_$MODE" "$rel"
		rel=
		say discarded
		;;
	once)
		[ -z "$locked" ] || die proto "once without the lock"
		case $arg in *[!0-9a-f]* | '') die proto "bad commit '$arg'" ;; esac
		srccommit "$okword" "$arg"
		trap : HUP INT TERM
		run_once "$arg"
		trap 'exit 1' HUP INT TERM
		untracked_any=?
		;;
	cutover)
		[ -z "$locked" ] || die proto "cutover without the lock"
		case $arg in *[!0-9a-f]* | '') die proto "bad commit '$arg'" ;; esac
		srccommit "${rest%% *}" "$arg"
		AUD=${rest#* }
		# A signal now must not leave the service down: finish the step.
		trap : HUP INT TERM
		printf '%s\n' "$arg" 2>/dev/null >"$G/cutover" || :
		"cutover_$MODE" "$arg"
		: 2>/dev/null >"$G/cutover"
		trap 'exit 1' HUP INT TERM
		untracked_any=?
		;;
	swap)
		[ -z "$locked" ] || die proto "swap without the lock"
		AUD=${line#"$T swap "}
		trap : HUP INT TERM
		swap_bluegreen
		trap 'exit 1' HUP INT TERM
		untracked_any=?
		;;
	log)
		printf '%s\n' "${line#"$T log "}" >>"$G/audit.log" 2>/dev/null
		say logged
		;;
	bye) break ;;
	*) die proto "unknown command" ;;
	esac
done
# What this run prepared and did not use, or moved aside, goes.
[ -n "$locked" ] || [ "$MODE" != bluegreen ] || [ -z "$BUILD" ] || tidy
exit 0

# gitric's status script: reads one host's deploy state, changes nothing.
# Values prepended by gitric: T (protocol token), P (repository path).
set -u
# A relative path is relative to the login user's home, as with scp.
case $P in /*) ;; *) cd "${HOME:-.}" 2>/dev/null || true ;; esac
say() { printf '%s %s\n' "$T" "$*"; }
command -v git >/dev/null 2>&1 || { say error nogit; exit 0; }
if ! cd -- "$P" 2>/dev/null || [ "$(git rev-parse --git-dir 2>/dev/null)" != .git ]; then
	say head none
	exit 0
fi
G=$PWD/.git/gitric
[ -f "$G/lock/owner" ] && say locked "$(cat "$G/lock/owner")"
[ -d "$G/lock" ] && [ ! -f "$G/lock/owner" ] && say locked "an unknown deploy"
if [ -f "$G/audit.log" ]; then
	tail -n 200 "$G/audit.log" | while IFS= read -r line; do say audit "$line"; done
fi
head=$(git rev-parse -q --verify 'HEAD^{commit}' 2>/dev/null) || head=none
say head "$head"
[ "$head" = none ] || say commit "$(git --no-pager log -1 --format='%ct %s' HEAD)"
say modified "$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l | tr -d ' ')"

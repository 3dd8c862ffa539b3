# gitric's status script: reads one host's deploy state, changes nothing.
# Values prepended by gitric: T (protocol token), P (deploy root), MODE.
set -u
case $P in /*) ;; *) cd "${HOME:-.}" 2>/dev/null || true ;; esac
say() { printf '%s %s\n' "$T" "$*"; }
command -v git >/dev/null 2>&1 || { say error nogit; exit 0; }
if ! cd -- "$P" 2>/dev/null; then
	say head none
	exit 0
fi
case $MODE in
inplace) R=$PWD/.git W=$PWD ;;
release) R=$PWD/repo W=$PWD/current ;;
*) R=$PWD/repo W=$PWD/live ;;
esac
if [ ! -d "$R" ] || [ ! -d "$W" ]; then
	say head none
	exit 0
fi
G=$R/gitric
[ -f "$G/lock/owner" ] && say locked "$(cat "$G/lock/owner")"
[ -d "$G/lock" ] && [ ! -f "$G/lock/owner" ] && say locked "an unknown deploy"
if [ -f "$G/audit.log" ]; then
	tail -n 200 "$G/audit.log" | while IFS= read -r line; do say audit "$line"; done
fi
head=$(git -C "$W" rev-parse -q --verify 'HEAD^{commit}' 2>/dev/null) || head=none
say head "$head"
[ "$head" = none ] || say commit "$(git -C "$W" --no-pager log -1 --format='%ct %s' HEAD)"
if [ "$head" != none ]; then
	git -C "$W" status --porcelain --untracked-files=no 2>/dev/null | head -n 20 | while IFS= read -r line; do say changed "$line"; done
fi
say modified

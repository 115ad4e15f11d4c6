# The one-node cluster's teardown, the only copy: `Cluster::stop` runs it, the watchdog runs
# it when the owning process is gone, and every start sweeps runs that crashed with it.
# Usage: sh -c "$SCRIPT" hookguard-node down RUN | watch OWNER RUN | sweep BASE
# It acts only on what a run recorded or named with its own prefix: pids (with their start
# times) in RUN/pids, shims whose command line names RUN's containerd socket, processes in
# the run's cgroups, mounts under RUN, and the netns, veth and cgroups called hg-<pid>.
set -u
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
say() { echo "hookguard node: $*" >&2; }

# The start time of a live (not zombie) pid, empty otherwise.
started() {
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    set -- ${stat##*) }
    [ "$1" = Z ] || echo "${20}"
}
alive_as() { [ -n "$2" ] && [ "$(started "$1")" = "$2" ]; }

# stop_pid PID START NAME SECONDS: SIGTERM, then SIGKILL after SECONDS.
stop_pid() {
    alive_as "$1" "$2" || return 0
    kill -TERM "$1" 2>/dev/null
    i=0
    while alive_as "$1" "$2" && [ "$i" -lt $(($4 * 10)) ]; do sleep 0.1; i=$((i + 1)); done
    if alive_as "$1" "$2"; then
        say "$3 ($1) still runs $4s after SIGTERM; sending SIGKILL"
        kill -KILL "$1" 2>/dev/null
        sleep 0.2
    fi
}

stop_component() {
    [ -f "$run/pids" ] || return 0
    while read -r pid start name; do
        [ "$name" = "$1" ] && stop_pid "$pid" "$start" "$name" "$2"
    done <"$run/pids"
}

cgroup_pids() { # the pids in the run's cgroup subtree $1 (relative), every hierarchy
    for h in /sys/fs/cgroup/*/; do
        [ -d "$h$CGROUP/$1" ] && find "$h$CGROUP/$1" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -u
}

kill_cgroup() { # SIGKILL every process in the subtree until it is empty (10 s at most)
    i=0
    while pids=$(cgroup_pids "$1") && [ -n "$pids" ] && [ "$i" -lt 50 ]; do
        kill -KILL $pids 2>/dev/null
        sleep 0.2
        i=$((i + 1))
    done
    [ -z "$(cgroup_pids "$1")" ] || say "processes still in cgroup $CGROUP/$1: $(cgroup_pids "$1" | tr '\n' ' ')"
}

kill_shims() { # containerd-shim-runc-v2 processes serving this run's containerd
    for cmdline in /proc/[0-9]*/cmdline; do
        args=$(tr '\0' '\n' <"$cmdline" 2>/dev/null) || continue
        printf '%s\n' "$args" | grep -qx -- "$SOCK" || continue
        printf '%s\n' "$args" | grep -qx -- -address || continue
        pid=${cmdline#/proc/}
        pid=${pid%/cmdline}
        id=$(printf '%s\n' "$args" | sed -n '/^-id$/{n;p;q}')
        ns=$(printf '%s\n' "$args" | sed -n '/^-namespace$/{n;p;q}')
        kill -KILL "$pid" 2>/dev/null
        # containerd 1.6 names a shim's socket after sha256(address/namespace/id).
        hash=$(printf '%s' "$SOCK/$ns/$id" | sha256sum | cut -d' ' -f1)
        rm -f "/run/containerd/s/$hash"
    done
}

mounts_under() { awk -v p="$1/" 'index($2, p) == 1 { print $2 }' /proc/mounts; }

unmount_all() {
    for pass in 1 2 3; do
        list=$(mounts_under "$run" | sort -r)
        [ -n "$list" ] || return 0
        for m in $list; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
    done
    [ -z "$(mounts_under "$run")" ] || say "still mounted under $run: $(mounts_under "$run" | tr '\n' ' ')"
}

remove_cgroups() {
    i=0
    while [ "$i" -lt 25 ]; do
        left=0
        for h in /sys/fs/cgroup/*/; do
            [ -d "$h$CGROUP" ] || continue
            find "$h$CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null
            [ -d "$h$CGROUP" ] && left=1
        done
        [ "$left" = 0 ] && return 0
        sleep 0.2
        i=$((i + 1))
    done
    say "could not remove cgroups: $(ls -d /sys/fs/cgroup/*/"$CGROUP" 2>/dev/null | tr '\n' ' ')"
}

# Another run of this harness that is still alive, if any (it keeps the saved sysctls).
other_live_run() {
    for other in "$BASE"/hg-*; do
        [ "$other" = "$run" ] && continue
        [ -f "$other/state.env" ] && [ ! -e "$other/down" ] || continue
        (. "$other/state.env" && alive_as "$OWNER" "$OWNER_START") && return 0
    done
    return 1
}

down() {
    run=$1
    [ -f "$run/state.env" ] || return 0
    . "$run/state.env"
    exec 9>>"$run/teardown.lock"
    flock 9
    [ -e "$run/down" ] && return 0
    # Container and sandbox ids, for the files containerd and libcni keep outside the run.
    cri="$run/containerd/root/io.containerd.grpc.v1.cri"
    ids=$(ls "$cri/sandboxes" "$cri/containers" "$run/containerd/state/io.containerd.runtime.v2.task/k8s.io" 2>/dev/null | grep -E '^[0-9a-f]{64}$' | sort -u)
    # The node first, so nothing restarts the pods; then the pods; then the control plane.
    stop_component kube-proxy 10
    stop_component kubelet 10
    kill_cgroup kubepods
    for c in kube-scheduler kube-controller-manager kube-apiserver etcd containerd; do
        stop_component "$c" 10
    done
    kill_shims
    kill_cgroup .
    unmount_all
    remove_cgroups
    ip link del "$VETH" 2>/dev/null
    [ -e "/run/netns/$NETNS" ] && ip netns del "$NETNS"
    if [ -f "$run/sysctl.saved" ] && ! other_live_run; then
        while read -r key value; do
            [ "$(cat "/proc/sys/$key")" = "$value" ] || echo "$value" >"/proc/sys/$key"
        done <"$run/sysctl.saved"
    fi
    # What the kubelet and containerd write outside their configured folders.
    for link in /var/log/containers/*.log; do
        case "$(readlink "$link" 2>/dev/null)" in "$run"/*) rm -f "$link" ;; esac
    done
    rm -f /var/lib/cni/results/"$NET_NAME"-*
    for id in $ids; do
        rm -f "/var/lib/cni/results/cni-loopback-$id-lo"
        for fifo in /run/containerd/fifo/*/"$id"-*; do
            [ -e "$fifo" ] || continue
            rm -f "$fifo"
            rmdir "${fifo%/*}" 2>/dev/null
        done
    done
    [ "$CREATED_VAR_LIB_KUBELET" = 1 ] && rm -f /var/lib/kubelet/device-plugins/kubelet.sock \
        /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint
    for d in $CREATED_DIRS; do rmdir "$d" 2>/dev/null; done
    if [ -n "$(mounts_under "$run")" ]; then
        say "left $run in place: something is still mounted under it"
        touch "$run/down"
    elif [ -e "$run/keep" ]; then
        rm -rf --one-file-system "$run/containerd" "$run/kubelet" "$run/etcd"
        touch "$run/down"
        say "logs kept in $run"
    else
        rm -rf --one-file-system "$run"
    fi
}

case "$1" in
down) BASE=$(dirname "$2") && down "$2" ;;
watch)
    owner=$2 owner_start=$(started "$2")
    while alive_as "$owner" "$owner_start"; do sleep 0.5; done
    BASE=$(dirname "$3") && down "$3"
    ;;
sweep)
    BASE=$2
    for r in "$BASE"/hg-*; do
        [ -f "$r/state.env" ] && [ ! -e "$r/down" ] || continue
        (. "$r/state.env" && alive_as "$OWNER" "$OWNER_START") && continue
        say "tearing down $r, left by a process that is gone"
        (down "$r")
    done
    # Leftovers whose run folder is gone (removed by hand): our netns and cgroups only.
    for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E '^hg-[0-9]+$'); do
        [ -d "$BASE/$ns" ] || { say "removing netns $ns"; ip netns del "$ns"; }
    done
    for d in /sys/fs/cgroup/*/hg-*; do
        [ -d "$d" ] || continue
        CGROUP=${d##*/}
        case "$CGROUP" in *[!0-9hg-]*) continue ;; esac
        [ -d "$BASE/$CGROUP" ] && continue
        say "removing cgroup $d"
        kill_cgroup .
        remove_cgroups
    done
    ;;
*) say "unknown mode $1"; exit 64 ;;
esac

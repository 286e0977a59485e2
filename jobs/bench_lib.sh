# Shared by the benchmark scripts (sourced): pull the numbers out of the
# line `morphogen train` prints when it finishes ("morphogen: done: ...").
# parse_done LINE sets: done_loss, done_rss_mib, done_pool_mib, done_tape_mib,
# done_s_per_iter, done_comm_share, done_kib_per_iter.
parse_done() {
    local line=$1
    done_loss=$(sed -E 's/.*final loss ([0-9.e+-]+),.*/\1/' <<<"$line")
    done_rss_mib=$(sed -E 's/.*peak memory ([0-9.]+) MiB.*/\1/' <<<"$line")
    done_pool_mib=$(sed -E 's/.*\(pool (shard )?([0-9.]+) MiB.*/\2/' <<<"$line")
    done_tape_mib=$(sed -E 's/.*rollout tape ([0-9.]+) MiB.*/\1/' <<<"$line")
    done_s_per_iter=$(sed -E 's/.* ([0-9.]+) s per iteration.*/\1/' <<<"$line")
    done_comm_share=$(sed -E 's/.*communication ([0-9.]+%).*/\1/' <<<"$line")
    done_kib_per_iter=$(sed -E 's/.*\(([0-9.]+) KiB received per iteration\).*/\1/' <<<"$line")
}

# checkpoint_iteration RUN.h5: the iterations a run file has completed.
checkpoint_iteration() {
    "${MORPHOGEN_PYTHON:-/usr/bin/python3}" -c \
        "import h5py,sys; print(int(h5py.File(sys.argv[1],'r')['checkpoint'].attrs['iteration']))" "$1"
}

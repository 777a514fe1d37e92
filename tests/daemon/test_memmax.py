"""test_memmax.py: admission counts a VM's hot-plug maximum (docs/memory.md,
"Admission and placement"). On a host of 1024 MiB (memory_capacity_mib, the
default 64 MiB overhead per VM):

- a VM of 64 MiB whose memory_max_mib is 2048 is refused at start (409,
  field memory_max_mib, the reason naming 2112 MiB and memory_max_mib),
  and stays defined;
- with memory_max_mib 512 it starts and commits 576 MiB, not 128: a
  448 MiB VM (512 with its overhead) is then refused, naming the 576 MiB
  committed;
- its worker's memory cgroup limit is 512 + 64 MiB, and the guest grows to
  its maximum (cella vm set --memory 512: 448 MiB plugged);
- once it stops, the 448 MiB VM starts."""

import glob

from cellad import ConsoleTail, Daemon, check, main, memwriter_rounds


def cgroup_limit_mib(d, uuid):
    for path in glob.glob(f"/sys/fs/cgroup/memory/{d.cgroup_parent}/{uuid}/memory.limit_in_bytes") + \
            glob.glob(f"/sys/fs/cgroup/unified/{d.cgroup_parent}/{uuid}/memory.max"):
        with open(path) as f:
            return int(f.read().strip()) >> 20
    return None


def test(args):
    with Daemon(args, config={"memory_capacity_mib": 1024}) as d:
        d.define("grow", "vmem", "", memory_mib=64, memory_max_mib=2048)
        r = d.post("/v1/vms/grow/start")
        err = r.json.get("error", {}) if r.status != 200 else {}
        check(r.status == 409 and err.get("field") == "memory_max_mib" and
              "needs 2112 MiB" in err.get("reason", "") and
              "memory_max_mib" in err.get("reason", ""),
              f"a maximum past the host's capacity is refused: {r.status} {err}")
        check(d.vm("grow")["state"] == "defined", "grow did not start")

        r = d.request("PATCH", "/v1/vms/grow", {"memory_max_mib": 512})
        check(r.status == 200, f"memory_max_mib 512 on the stopped VM: {r.status} {r.body}")
        d.action("grow", "start")
        d.wait_console("grow", "vmem: plugged 0 MiB", 60)
        d.define("other", "memwriter", "mib=4 rounds=0 pause_ms=50", memory_mib=448)
        r = d.post("/v1/vms/other/start")
        err = r.json.get("error", {}) if r.status != 200 else {}
        check(r.status == 409 and err.get("field") == "memory_mib" and
              "576 of 1024 MiB are committed" in err.get("reason", ""),
              f"the running VM commits its maximum (576 MiB): {r.status} {err}")

        uuid = d.vm("grow")["uuid"]
        lim = cgroup_limit_mib(d, uuid)
        if lim is None:
            check(True, "no memory cgroup for the worker here: limit not checked")
        else:
            check(lim == 512 + 64, f"the worker's memory cgroup limit is 576 MiB: {lim}")
        d.cli("vm", "set", "grow", "--memory", "512")
        d.wait_console("grow", "vmem: plugged 448 MiB", 120)
        check(True, "the guest grew to its maximum")

        d.action("grow", "kill")
        d.action("other", "start")
        t = ConsoleTail(d, "other", 0)
        memwriter_rounds(t, 1)
        t.close()
        check(True, "the other VM starts once the first has stopped")
        d.action("other", "kill")


if __name__ == "__main__":
    main(test)

"""test_cpuhp.py: vCPU hot-plug through cellad (docs/guests.md, "vCPU
hot-plug"). A VM defined with cpus_max (cella vm create --cpus-max) runs
the cpuhp guest, which plays the ACPI OS by hand; `cella vm set NAME --cpus
N` on the running (sandboxed) VM makes the worker create the vCPU and raise
the GED event, the guest acknowledges it and starts it, the VM's metrics
show the vCPU and the controller, and the definition's cpus becomes N (a
restart keeps it: the restarted VM boots with N vCPUs). Refused, naming
the field: cpus past cpus_max, below the running count (no eject), a
running VM without cpus_max, a guest that runs no ACPI OS, cpus_max below
cpus, cpus_max with acpi=off. The field survives a restart of cellad."""


from cellad import Daemon, check, main, wait_vm_metric


def refused(d, name, cpus, status, text):
    p = d.cli("vm", "set", name, "--cpus", str(cpus), expect=None)
    check(p.returncode != 0 and text in p.stderr, f"--cpus {cpus} refused: {p.stderr.strip()}")
    r = d.request("PATCH", f"/v1/vms/{name}", {"cpus": cpus})
    check(r.status == status and r.json["error"]["field"] == "cpus",
          f"PATCH cpus {cpus}: {r.status} {r.body}")


def test(args):
    with Daemon(args) as d:
        kernel = args["guests"]["cpuhp"]
        for bad, why in ((1, "below cpus"), (33, "from cpus to 32"), ("4", "from cpus to 32"),
                         (-1, "from cpus to 32")):
            r = d.request("POST", "/v1/vms", {"name": "bad", "kernel": kernel, "cpus": 2,
                                              "cpus_max": bad})
            check(r.status == 400 and r.json["error"]["field"] == "cpus_max" and
                  why in r.json["error"]["message"],
                  f"cpus_max {bad!r} refused: {r.status} {r.body}")
        r = d.request("POST", "/v1/vms", {"name": "bad", "kernel": kernel, "cpus": 1,
                                          "cpus_max": 2, "cmdline": "acpi=off"})
        check(r.status == 400 and "acpi=off" in r.json["error"]["message"],
              f"cpus_max with acpi=off refused: {r.status} {r.body}")

        d.cli("vm", "create", "h1", "--kernel", kernel, "--cpus", "1", "--cpus-max", "3",
              "--cmdline", "rounds=2")
        check(d.vm("h1")["cpus_max"] == 3, "definition has cpus_max 3")
        d.action("h1", "start")
        d.wait_console("h1", "cpuhp: ready, 1 cpus", 60)
        m = wait_vm_metric(d, "h1", "cpu_hotplug", "ospm", True, 60)
        check(m["possible"] == 3 and m["present"] == [0], f"metrics before: {m}")

        d.cli("vm", "set", "h1", "--cpus", "2")
        d.wait_console("h1", "cpuhp: cpu 1 online", 120)
        m = wait_vm_metric(d, "h1", "cpu_hotplug", "inserting", [], 60)
        check(m["vcpus"] == 2 and m["present"] == [0, 1], f"metrics cpu_hotplug {m}")
        vcpus = d.get("/v1/vms/h1/metrics").json["vcpus"]
        check(len(vcpus) == 2 and vcpus[1]["cpu_time_ns"] > 0, f"metrics vcpus {vcpus}")
        check(d.vm("h1")["cpus"] == 2, "the definition has 2 vCPUs now")

        refused(d, "h1", 4, 400, "past cpus_max (3)")
        refused(d, "h1", 1, 400, "no eject")
        r = d.request("PATCH", "/v1/vms/h1", {"cpus": 2})
        check(r.status == 200, f"the current count is no change: {r.status}")
        r = d.request("PATCH", "/v1/vms/h1", {"cpus": 3})
        check(r.status == 200 and r.json["cpu_hotplug"]["present"] == [0, 1, 2],
              f"PATCH cpus 3: {r.status} {r.body}")
        d.wait_console("h1", "cpuhp: cpu 2 online", 120)
        d.wait_console("h1", "PASS cpuhp", 120)
        d.wait_state("h1", ["stopped"])  # the guest's program ended

        # a guest that runs no ACPI OS (the echo guest never runs the GED's _INI)
        r = d.request("POST", "/v1/vms", {"name": "n1", "kernel": args["guests"]["echo"],
                                          "cpus": 1, "cpus_max": 2})
        check(r.status in (200, 201), f"create n1: {r.status} {r.body}")
        d.action("n1", "start")
        d.wait_state("n1", ["running"])
        refused(d, "n1", 2, 409, "no ACPI OS")
        check(d.vm("n1")["cpus"] == 1, "refused: the definition keeps 1 vCPU")

        d.define("e1", "echo")
        d.action("e1", "start")
        r = d.request("PATCH", "/v1/vms/e1", {"cpus": 2})
        check(r.status == 409 and "cpus_max" in r.json["error"]["message"],
              f"running VM without cpus_max: {r.status} {r.body}")
        for n in ("n1", "e1"):
            d.action(n, "stop", {"timeout_s": 0}, expect=202)
            d.wait_state(n, ["stopped"])

        # the new count stays: the VM boots with 3 vCPUs (all in the MP table)
        d.action("h1", "start")
        d.wait_console("h1", "cpuhp: ready, 3 cpus", 60)
        d.action("h1", "stop", {"timeout_s": 0}, expect=202)
        d.wait_state("h1", ["stopped"])

        d.stop()
        d.start()
        check(d.vm("h1")["cpus_max"] == 3 and d.vm("h1")["cpus"] == 3,
              "cpus and cpus_max kept by the store")
        r = d.request("PATCH", "/v1/vms/h1", {"cpus_max": 0})
        check(r.status == 200 and d.vm("h1")["cpus_max"] == 0, "cpus_max back to 0")


if __name__ == "__main__":
    main(test)

// create.tsx: the New VM page.
import { Vm, post } from "./api";
import { go } from "./ui";
import { store } from "./store";
import { Heading } from "./ui";
import { VmForm } from "./vmform";

export function CreateVm() {
  return (
    <section>
      <Heading>New VM</Heading>
      <VmForm submitLabel="Create VM" onSubmit={async (body) => {
        const vm = await post<Vm>("/v1/vms", body);
        store.vms.set(vm.name, vm);
        store.notify();
        go(`vms/${encodeURIComponent(vm.name)}`);
      }} />
    </section>
  );
}

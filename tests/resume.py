"""Mid-epoch resume through torchdata's StatefulDataLoader, shared by the sampler tests."""


def stateful_resume(make_loader, stop=3):
    """(whole, resumed): the index lists of an uninterrupted epoch of ``make_loader()``, and of one
    stopped after ``stop`` batches, saved with the loader's ``state_dict`` and finished by a fresh
    loader that loaded it. Batches are (inputs, targets, indices)."""
    whole = [b[2].tolist() for b in make_loader()]
    first, stopped = [], make_loader()
    for batch in stopped:
        first.append(batch[2].tolist())
        if len(first) == stop:
            state = stopped.state_dict()
            break
    resumed = make_loader()
    resumed.load_state_dict(state)
    return whole, first + [b[2].tolist() for b in resumed]

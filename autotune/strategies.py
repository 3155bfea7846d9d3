"""Search strategies: which candidates to evaluate next, given what earlier ones scored.

A strategy is asked for a batch (`ask()`, [] when it is done), the tuner compiles the batch in
parallel and measures it, then tells the strategy the costs (`tell()`; +inf for failures and pruned
configs). The budget counts the candidates a strategy proposes; results already in the tuning
database are free.

    exhaustive    every candidate, one batch
    random        a seeded sample of `budget` candidates, one batch
    model         price every candidate with the accelerator model, evaluate the `budget` cheapest
    evolutionary  a genetic algorithm over the parameter grid: tournament selection, uniform crossover,
                  neighbour mutation, (mu + lambda) survival; for spaces too big to enumerate by hand
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence

from autotune.space import Config

DEFAULT_BUDGET = {"exhaustive": None, "random": 0.25, "model": 0.1, "evolutionary": 0.25}
MIN_DEFAULT = 3  # a default budget never measures fewer (leaders need rivals)


def resolve_budget(budget: float | None, n: int, strategy: str) -> int:
    """Candidates to evaluate: an int count, a fraction in (0, 1] of the n candidates, or the default."""
    if budget is None:
        frac = DEFAULT_BUDGET[strategy]
        return n if frac is None else min(n, max(MIN_DEFAULT, math.ceil(frac * n)))
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0:
        raise ValueError(f"budget must be a count >= 1 or a fraction in (0, 1], got {budget!r}")
    if isinstance(budget, float):
        if budget > 1:
            raise ValueError(f"a float budget is a fraction of the space, in (0, 1]; got {budget}")
        return max(1, min(n, math.ceil(budget * n)))
    return min(n, budget)


class Strategy:
    name = "?"

    def __init__(self, candidates: Sequence[Config], budget: int):
        self.candidates, self.budget = list(candidates), budget
        self.costs: dict[Config, float] = {}
        self.asked = False  # the one-batch strategies are done after their batch

    def ask(self) -> list[Config]:
        raise NotImplementedError

    def tell(self, costs: Mapping[Config, float]) -> None:
        self.costs.update(costs)


class Exhaustive(Strategy):
    name = "exhaustive"

    def ask(self) -> list[Config]:
        if self.asked:
            return []
        self.asked = True
        return self.candidates[:self.budget]


class RandomSearch(Strategy):
    name = "random"

    def __init__(self, candidates, budget, seed: int = 0):
        super().__init__(candidates, budget)
        self.rng = random.Random(seed)

    def ask(self) -> list[Config]:
        if self.asked:
            return []
        self.asked = True
        pick = sorted(self.rng.sample(range(len(self.candidates)), self.budget))
        return [self.candidates[i] for i in pick]


class ModelGuided(Strategy):
    """The `budget` candidates the model prices cheapest (pruned ones, priced +inf, never). Where a
    run of equal prices straddles the cut, evenly spaced members of it are taken (the model cannot
    tell them apart, so the sample should span them)."""
    name = "model"

    def __init__(self, candidates, budget, price: Callable[[Config], float]):
        super().__init__(candidates, budget)
        self.price = price

    def ask(self) -> list[Config]:
        if self.asked:
            return []
        self.asked = True
        priced = [(self.price(c), i, c) for i, c in enumerate(self.candidates)]
        ranked = sorted((p for p in priced if math.isfinite(p[0])), key=lambda p: (p[0], p[1]))
        out: list[Config] = []
        for group in _ties(ranked):
            room = self.budget - len(out)
            if room <= 0:
                break
            out += group if len(group) <= room else _spread(group, room)
        return out


def _ties(ranked: list) -> list[list[Config]]:
    groups: list[list[Config]] = []
    last = None
    for cost, _, cfg in ranked:
        if last is not None and math.isclose(cost, last, rel_tol=1e-9):
            groups[-1].append(cfg)
        else:
            groups.append([cfg])
        last = cost
    return groups


def _spread(group: list[Config], k: int) -> list[Config]:
    if k == 1:
        return [group[0]]
    return [group[round(i * (len(group) - 1) / (k - 1))] for i in range(k)]


class Evolutionary(Strategy):
    """Generations of `population` children of the best survivors, until `budget` are proposed."""
    name = "evolutionary"

    def __init__(self, candidates, budget, seed: int = 0, population: int | None = None):
        super().__init__(candidates, budget)
        self.rng = random.Random(seed)
        self.valid = set(self.candidates)
        self.population = population or max(4, min(16, budget // 4 or 1))
        self.genes = _genes(self.candidates)
        self.proposed: set[Config] = set()

    def ask(self) -> list[Config]:
        room = min(self.population, self.budget - len(self.proposed))
        if room <= 0:
            return []
        alive = sorted((c for c, v in self.costs.items() if math.isfinite(v)), key=self.costs.__getitem__)
        parents = alive[:self.population]
        batch: list[Config] = []
        for _ in range(50 * room):
            if len(batch) == room:
                break
            child = self._child(parents) if len(parents) >= 2 else self.rng.choice(self.candidates)
            if child in self.valid and child not in self.proposed:
                batch.append(child)
                self.proposed.add(child)
        fresh = [c for c in self.candidates if c not in self.proposed]
        while len(batch) < room and fresh:  # the GA is stuck: explore at random
            child = fresh.pop(self.rng.randrange(len(fresh)))
            batch.append(child)
            self.proposed.add(child)
        return batch

    def _child(self, parents: list[Config]) -> Config:
        a, b = self._tournament(parents), self._tournament(parents)
        genes = {n: (b.kwargs[n] if n in b.kwargs and self.rng.random() < 0.5 else v) for n, v in a.kwargs.items()}
        rate = 1.0 / len(genes)
        for n, choices in self.genes.items():
            if n in genes and self.rng.random() < rate:
                i = choices.index(genes[n])
                j = i + self.rng.choice((-1, 1)) if self.rng.random() < 0.7 else self.rng.randrange(len(choices))
                genes[n] = choices[max(0, min(len(choices) - 1, j))]
        return Config(**genes)

    def _tournament(self, parents: list[Config]) -> Config:
        x, y = self.rng.choice(parents), self.rng.choice(parents)
        return x if self.costs[x] <= self.costs[y] else y


def _genes(candidates: Sequence[Config]) -> dict[str, list]:
    """Each parameter's choices, sorted where comparable (so a mutation step is to a neighbour)."""
    names = list(dict.fromkeys(n for c in candidates for n in c.kwargs))
    genes = {}
    for n in names:
        values = list(dict.fromkeys(c.kwargs.get(n) for c in candidates))
        try:
            values.sort()
        except TypeError:
            pass
        genes[n] = values
    return genes


STRATEGIES = ("exhaustive", "random", "model", "evolutionary")


def make_strategy(name: str, candidates: Sequence[Config], budget: float | None, *, seed: int = 0,
                  price: Callable[[Config], float] | None = None) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    k = resolve_budget(budget, len(candidates), name)
    if name == "exhaustive":
        return Exhaustive(candidates, k)
    if name == "random":
        return RandomSearch(candidates, k, seed)
    if name == "model":
        if price is None:
            raise ValueError("the model strategy needs a pricing function")
        return ModelGuided(candidates, k, price)
    return Evolutionary(candidates, k, seed)

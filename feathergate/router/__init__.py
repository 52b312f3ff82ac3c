"""Routing: which deployment serves a request, and what happens when it fails.

Design note
-----------
Everything here is pure: no sockets, no sleeping. The relay asks a
:class:`Router` for an :class:`AttemptPlan` per request and reports each
attempt back (``started`` / ``succeeded`` / ``failed`` / ``cancelled``); the
plan answers a failure with a :class:`Retry` (deployment, delay) or a
:class:`GiveUp`. The relay owns the waiting and the cancellation. Time comes
from an injected monotonic clock and randomness from an injected
``random.Random``, so every rule is tested with a fake clock and a seed.

With shared state (:mod:`feathergate.state`), the router is given the store
and changes in two places only: its state posts and merges rows on the
store's board and broadcasts cooldowns (:mod:`.shared`, still synchronous),
and ``AttemptPlan.admit``, the one ``await``, asks the store's counters for a
deployment with ``rpm``/``tpm`` before it is started. Tests run several
routers on one in-memory hub to model several processes.

What is decided where:

=================  ===========================================================
``groups``         model name -> group; wildcards (exact beats pattern, most
                   specific pattern wins, ``*`` segments mapped upstream)
``selection``      readiness (cooldown, rpm/tpm over a sliding 60 s), failover
                   to untried deployments, ``order`` tiers, then the strategy
``strategies``     LiteLLM's ``routing_strategy`` values, one function each
``policy``         retry budgets, backoff, cooldown length, fallback lists
``classify``       any error -> LiteLLM's exception class (the policy keys)
``plan``           one request's walk through retries and fallbacks
``state``          the only mutable data, behind the ``RouterState`` protocol
``shared``         that state plus the peers' rows, through the store
=================  ===========================================================

LiteLLM semantics followed: the five strategy names and ``weight``/``rpm``/
``tpm`` shuffle weights; ``order`` tiers; ``allowed_fails`` as fails
*allowed* per minute (the next one cools down) with ``allowed_fails_policy``
per class; a group's last healthy deployment is never cooled; failover to
another deployment without sleeping; ``retry_policy`` over ``num_retries``;
``fallbacks`` / ``context_window_fallbacks`` / ``content_policy_fallbacks`` /
``default_fallbacks`` in LiteLLM's list-of-maps form, ``*`` rules, and
``max_fallbacks``; a saturated group falls back like a rate limit.

Where we differ, and why:

* A deployment without ``order`` ranks after every explicit ``order``
  (LiteLLM only groups when ``order`` is set); mixing both then means "the
  ordered ones first", which is what such a config usually intends.
* Only failures that speak about the deployment (retryable ones, 401/403,
  404) count towards a cooldown unless ``allowed_fails_policy`` names the
  class, so bad requests from one client cannot cool a healthy deployment.
* A 429 with ``Retry-After`` cools the deployment at once for that long
  (capped at 300 s); a cooldown whose time passed ends by itself, and the
  failure count is kept (a half-open breaker: one more failure within the
  minute cools it again, one success clears it).
* Without a ``retry_policy`` entry only retryable errors are retried
  (connect errors, timeouts before the first byte, 408, 409, 429, 5xx); an
  explicit entry opts a class in, as LiteLLM's documented example does.
* Context-window errors are their own class (not BadRequestError) and fall
  back only through ``context_window_fallbacks``; retrying them is useless.
* Fallback lists are not nested: the requested model's list is walked in
  order, each group with its own retries, at most ``max_fallbacks`` groups.
* Latency samples are plain seconds (LiteLLM divides by completion tokens);
  time to first token is used for streams instead. Failures add no penalty
  sample; cooldowns already take a failing deployment out.
* A deployment that can only fail with a config error (unsupported
  provider, unset key variable) is left out of its group while a sibling
  can serve; alone, it stays so the client sees that error.
* rpm/tpm are enforced before sending (LiteLLM's v2 pre-call check) for
  every strategy, not only the usage-based ones; with shared state they are
  exact across processes (one atomic script per request), where LiteLLM's
  are approximate (a local check, then a sync every 0.1 s).
"""

from feathergate.router.core import Router, carried_state
from feathergate.router.plan import AttemptPlan, Decision, GiveUp, Retry
from feathergate.router.selection import DeploymentStatus
from feathergate.router.state import InMemoryState, RouterState

__all__ = [
    "AttemptPlan",
    "Decision",
    "DeploymentStatus",
    "GiveUp",
    "InMemoryState",
    "Retry",
    "Router",
    "RouterState",
    "carried_state",
]

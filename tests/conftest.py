import os

from hypothesis import HealthCheck, settings

# Profiles as python-zstandard keeps them: quick by default, more examples in CI, many on demand.
settings.register_profile("default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("expensive", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Without the JIT every kernel runs as Python: keep example counts small there.
settings.register_profile("nojit", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "nojit" if os.environ.get("NUMBA_DISABLE_JIT") == "1" else "default")
)

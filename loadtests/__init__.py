"""Load tests of a Tally fleet: Locust scenarios, load shapes, samplers, and the report that
sets measurements beside the capacity model's predictions (`python -m loadtests --help`)."""

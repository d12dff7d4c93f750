"""Templates that several tests render."""

# A template that runs for ~10 s of CPU with no input: 10,000 iterations of a filter chain
# over 8,000 characters (within the loop limit and the value ceiling).
SLOW_SUBJECT = (
    "{% assign s = '' %}{% for i in (1..100) %}{% for j in (1..100) %}"
    "{% assign s = s | append: 'zyxwvutsrq' | slice: 0, 8000 | split: '' | sort | reverse | join: '' %}"
    "{% endfor %}{% endfor %}{{ s | size }}"
)

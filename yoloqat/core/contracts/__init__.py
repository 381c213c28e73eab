"""Written contracts of the component kinds: one ``typing.Protocol`` per kind.

The registry checks every built component against its kind's Protocol and names the plugin
and the missing member when it does not conform. Each member is documented in
``docs/plugins.md``.
"""

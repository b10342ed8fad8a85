"""Preview templates: each directory is a Vite project whose files seed a machine's workspace.

The templates are data, shipped beside the agent; `install` installs their npm dependencies
once, from each template's committed lockfile, into the template directory, where every
machine's workspace links to them.
"""

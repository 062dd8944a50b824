"""The Faust shell: ``app.py`` declares topics, tables and agents; ``timers.py`` the due-timer heap."""

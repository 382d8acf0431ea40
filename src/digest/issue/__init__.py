"""The issue: choose and rank the week's articles, render the HTML and text parts, build the .eml."""

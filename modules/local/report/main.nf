process EVOSCAN_REPORT {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(windows), path(scores)

    output:
    tuple val(meta), path("${meta.id}/report.html"), emit: html
    tuple val(meta), path("${meta.id}/candidates.tsv"), emit: candidates
    tuple val(meta), path("${meta.id}/motif_sites.tsv"), emit: motif_sites
    tuple val(meta), path("${meta.id}/pairs.tsv.gz"), emit: pairs
    tuple val(meta), path("${meta.id}/candidates.bedpe"), emit: bedpe
    tuple val(meta), path("${meta.id}/candidates.interact.bed"), path("${meta.id}/interact.as"), emit: interact
    tuple val(meta), path("${meta.id}/best_score.bedgraph"), emit: bedgraph
    tuple val(meta), path("${meta.id}/summary.txt"), emit: summary
    tuple val("${task.process}"), val("evoscan"), eval("evoscan --version | cut -d\" \" -f2"), emit: versions

    script:
    def args = task.ext.args ?: ''
    """
    mkdir -p ${meta.id}
    evoscan report --windows ${windows} --scores ${scores} ${args} --outdir ${meta.id} > ${meta.id}/summary.txt
    """

    stub:
    """
    mkdir -p ${meta.id}
    touch ${meta.id}/report.html ${meta.id}/candidates.tsv ${meta.id}/motif_sites.tsv ${meta.id}/pairs.tsv.gz
    touch ${meta.id}/candidates.bedpe ${meta.id}/candidates.interact.bed ${meta.id}/interact.as
    touch ${meta.id}/best_score.bedgraph ${meta.id}/summary.txt
    """
}
